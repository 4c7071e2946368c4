"""Proposal post-processing shared by every proposer, as pure functions (the role of
segment_anything/utils/amg.py): point grids, crop boxes, stability, boxes, NMS, small
regions (used by `sam_amg`); instances from a probability map (`maps`: pmg-sam, ip-sam)."""
from engines.auto.grids import crop_boxes, layer_point_grids, point_grid
from engines.auto.maps import (MapOptions, check_cancel, is_blank, map_instances, map_proposals,
                               to_uint8)
from engines.auto.masks import (masks_to_boxes, near_crop_edge, nms, remove_small_regions,
                                stability_score, uncrop_boxes, uncrop_masks, uncrop_points)

__all__ = ["MapOptions", "check_cancel", "crop_boxes", "is_blank", "map_proposals", "layer_point_grids", "map_instances", "masks_to_boxes",
           "near_crop_edge", "nms", "point_grid", "remove_small_regions", "stability_score",
           "to_uint8", "uncrop_boxes", "uncrop_masks", "uncrop_points"]
