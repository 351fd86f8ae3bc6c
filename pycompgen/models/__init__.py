"""A trained model on disk: the checkpoint format (atomic save, ``weights_only`` load, a stage folder's best.pt /
last.pt) and loading a checkpoint — or a zoo entry's weights (``pycompgen.zoo``) — into its system's networks.

Used alike by training (save, resume), evaluation, the codec verbs and the zoo. Networks are built through the
system registry (``pycompgen.registry``), so this room imports no system.
"""
from .checkpoint import (CHECKPOINT_NAMES, FORMAT, eval_weights, load_checkpoint, load_weights_only, save_checkpoint,
                         stage_checkpoint)
from .loaded import (ELM_STAGES, STAGES, LoadedCheckpoint, load_for_eval, networks_from_payload,
                     resolve_checkpoints)

__all__ = ["FORMAT", "CHECKPOINT_NAMES", "eval_weights", "save_checkpoint", "load_checkpoint", "load_weights_only",
           "stage_checkpoint", "LoadedCheckpoint", "load_for_eval", "networks_from_payload", "resolve_checkpoints",
           "STAGES", "ELM_STAGES"]
