"""Data layer of pycompgen: face datasets (CelebA, face folders, synthetic faces) decoded once into cached uint8
arrays, the Canny + AWGN edge channel, and hand-drawn sketches mapped into the edge-map domain."""
from .cache import build_or_load, center_square_resize, decode_image, default_cache_dir
from .celeba import celeba_files, is_celeba_root, read_split_file
from .channel import DEFAULT_BLUR_SIGMA, DEFAULT_CANNY_HIGH, DEFAULT_CANNY_LOW, EdgeChannel
from .dataset import FaceArray, limit_faces, load_faces, to_float01
from .folder import folder_files, list_images
from .sketch import load_sketches, sketch_stages, sketch_to_edges, zhang_suen_thin
from .synthetic import synthetic_faces, synthetic_sketches

__all__ = ["FaceArray", "limit_faces", "load_faces", "to_float01", "EdgeChannel", "load_sketches", "synthetic_faces", "synthetic_sketches", "sketch_to_edges", "sketch_stages",
           "zhang_suen_thin", "build_or_load", "decode_image", "center_square_resize", "default_cache_dir",
           "celeba_files", "is_celeba_root", "read_split_file", "folder_files", "list_images",
           "DEFAULT_CANNY_LOW", "DEFAULT_CANNY_HIGH", "DEFAULT_BLUR_SIGMA"]
