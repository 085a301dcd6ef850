"""Data: tasks (synthetic experiments and user folders) behind one registry, and array readers.

Example::

    from seglab.data import create_task, list_tasks
    task = create_task("shapes", num_classes=4)
    images, targets = task.batch(step=0, batch_size=16, seed=0)
"""

from .tasks import (
    MODES,
    OverlapTask,
    ShapesTask,
    Task,
    ThresholdTask,
    create_task,
    list_tasks,
    make_generator,
    register_task,
)
from .folder import FolderTask  # noqa: E402  (registers "folder")

__all__ = [
    "MODES",
    "Task",
    "ThresholdTask",
    "ShapesTask",
    "OverlapTask",
    "FolderTask",
    "create_task",
    "list_tasks",
    "register_task",
    "make_generator",
]
