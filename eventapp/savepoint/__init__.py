"""Savepoints: self-contained, movable, backend-independent copies of a job's state and positions
(see docs/savepoints.md). The public names are exported from :mod:`eventapp`."""

from eventapp.savepoint.bootstrap import SavepointBuilder, SavepointTransform
from eventapp.savepoint.create import CreatedSavepoint, create_savepoint
from eventapp.savepoint.format import SavepointMetadata
from eventapp.savepoint.reader import Savepoint
from eventapp.savepoint.writer import SavepointWriter, new_savepoint_dir

__all__ = [
    "CreatedSavepoint",
    "Savepoint",
    "SavepointBuilder",
    "SavepointMetadata",
    "SavepointTransform",
    "SavepointWriter",
    "create_savepoint",
    "new_savepoint_dir",
]
