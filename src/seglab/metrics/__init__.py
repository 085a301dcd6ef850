"""Segmentation metrics of hard predictions: overlap (Dice, IoU, generalized Dice), boundary (Hausdorff,
surface distance, surface Dice), as functions and as stateful objects that synchronise across processes.

* :mod:`seglab.metrics.overlap` — ``dice_score``, ``iou_score``, ``generalized_dice_score``, the confusion counts;
* :mod:`seglab.metrics.surface` — ``hausdorff_distance``, ``average_surface_distance``, ``surface_dice``
  (scipy, the ``metrics`` extra);
* :mod:`seglab.metrics.components` — ``detection_f1``: found, missed and invented structures (connected
  components matched at IoU > 0.5; scipy, the ``structure`` extra);
* :mod:`seglab.metrics.skeleton` — ``cldice_score``, the centreline Dice of tubular structures
  (scikit-image, the ``structure`` extra);
* :mod:`seglab.metrics.torchmetric` — ``torchmetric(name, ...)``: any registered metric as a torchmetrics
  ``Metric`` for Lightning's ``self.log`` and ``MetricCollection`` (imported on use: needs torchmetrics);
* :mod:`seglab.metrics.registry` — ``list_metrics``, ``get_metric``, ``register_metric``: every metric by name;
* :mod:`seglab.metrics.stateful` — ``DiceScore``, ``IoU``, ``GeneralizedDiceScore``, ``HausdorffDistance``,
  ``SurfaceDistance``, ``SurfaceDice``, ``CLDiceScore`` with ``update / compute / reset``.

Conventions (averaging, empty masks, the matching MONAI and torchmetrics calls): ``docs/metrics.md``.
"""

from seglab.metrics.calibration import (
    CalibrationError,
    ReliabilityBins,
    adaptive_calibration_error,
    expected_calibration_error,
    reliability_bins,
)
from seglab.metrics.components import boundary_iou, component_dice, detection_counts, detection_f1
from seglab.metrics.overlap import (
    AGGREGATES,
    class_masks,
    confusion_counts,
    dice_from_counts,
    dice_score,
    generalized_dice_from_counts,
    generalized_dice_score,
    iou_from_counts,
    iou_score,
    pixel_accuracy,
    volume_difference,
)
from seglab.metrics.registry import METRICS, MetricInfo, count_metrics, get_metric, list_metrics, metric_info, register_metric
from seglab.metrics.skeleton import cldice_score
from seglab.metrics.stateful import (
    CLDiceScore,
    DiceScore,
    GeneralizedDiceScore,
    HausdorffDistance,
    IoU,
    Metric,
    SurfaceDice,
    BoundaryIoU,
    ComponentDice,
    DetectionF1,
    SurfaceDistance,
    VolumeDifference,
)
from seglab.metrics.surface import (
    DEFINITIONS,
    average_surface_distance,
    boundary_distances,
    hausdorff_distance,
    surface_dice,
    surface_distances,
)

__all__ = [
    "AGGREGATES", "class_masks", "confusion_counts", "dice_from_counts", "iou_from_counts",
    "generalized_dice_from_counts", "dice_score", "iou_score", "generalized_dice_score", "pixel_accuracy", "volume_difference", "VolumeDifference",
    "detection_counts", "detection_f1", "DetectionF1", "component_dice", "ComponentDice", "boundary_iou", "BoundaryIoU",
    "hausdorff_distance", "average_surface_distance", "surface_dice", "boundary_distances", "surface_distances",
    "DEFINITIONS", "cldice_score",
    "Metric", "DiceScore", "IoU", "GeneralizedDiceScore", "HausdorffDistance", "SurfaceDistance", "SurfaceDice",
    "CLDiceScore", "METRICS", "MetricInfo", "register_metric", "list_metrics", "get_metric", "metric_info",
    "count_metrics", "expected_calibration_error", "adaptive_calibration_error", "reliability_bins", "ReliabilityBins", "CalibrationError",
]
