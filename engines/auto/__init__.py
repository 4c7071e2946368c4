"""Proposal post-processing shared by every proposer, as pure functions (the role of
segment_anything/utils/amg.py): point grids, crop boxes, stability, boxes, NMS, small
regions. Used by `sam_amg` now, by pmg-sam and ip-sam as they land."""
from engines.auto.grids import crop_boxes, layer_point_grids, point_grid
from engines.auto.masks import (masks_to_boxes, near_crop_edge, nms, remove_small_regions,
                                stability_score, uncrop_boxes, uncrop_masks, uncrop_points)

__all__ = ["crop_boxes", "layer_point_grids", "point_grid", "masks_to_boxes", "near_crop_edge",
           "nms", "remove_small_regions", "stability_score", "uncrop_boxes", "uncrop_masks",
           "uncrop_points"]
