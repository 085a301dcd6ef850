"""Studies: the presets, defaults and labels of the published studies seglab reproduces. Outside this package
the library names no study; it asks :data:`PRESETS`, :func:`study_task`, :func:`study_monitors` and
:data:`STUDY_CONVERGE`.

One study today: Chlebus (2018), :mod:`seglab.studies.chlebus2018`.
"""

from .chlebus2018 import PRESETS, STUDY_CONVERGE, STUDY_STEPS, STUDY_TASKS, study_monitors, study_task

__all__ = ["PRESETS", "STUDY_CONVERGE", "STUDY_STEPS", "STUDY_TASKS", "study_monitors", "study_task"]
