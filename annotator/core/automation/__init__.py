"""Qt-free automation over the project: engine proposals -> candidates (threshold,
minimum area, suppression against existing work, class mapping), review commands
(accept / reject / edit, undoable) and batch auto-labelling (resumable, shardable with
torchrun). The window and `annotator autolabel` are thin layers over these modules.

Modules: candidates (proposals -> candidates), classes (class mapping), review
(commands), runs (one image's run, stored), proposer (engines, outside the window),
autolabel (the batch), ranks (one process, torch-free) and distributed (torchrun
ranks over torch.distributed)."""
