"""Object storage (S3-compatible) for checkpoints: locations, the store seam and its boto3 client."""

from eventapp.objectstore.location import ObjectLocation
from eventapp.objectstore.s3 import ObjectInfo, ObjectStore, S3ObjectStore, S3Settings

__all__ = ["ObjectInfo", "ObjectLocation", "ObjectStore", "S3ObjectStore", "S3Settings"]
