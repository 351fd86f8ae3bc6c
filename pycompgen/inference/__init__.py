"""Running trained models on images: reconstruction (x̂ from a face or a noisy edge map) and a trained model's
codec — faces to ``.pcg`` files and back — behind ``pycompgen compress`` / ``decompress`` and the benches.

Sits above the systems, the codecs and the loaded models (``pycompgen.models``); evaluation builds on it.
"""
from .codec import (DECODER_PARTS, SUFFIX, choose_payload, compress_batch, compress_files, compress_images,
                    compress_latent, decode_payload, decoder_hash, decompress_batch, decompress_bytes,
                    decompress_files, decompress_latent, find_decoder, run_decoder,
                    load_checkpoint_for_codec, missing_decoder_parts, prepare_codec, rate_line, read_images)
from .images import expand_inputs, output_names, write_pngs
from .reconstruct import check_image_size, reconstruct
from .refine import refine_files, refiner_of

__all__ = ["reconstruct", "check_image_size", "refine_files", "refiner_of", "expand_inputs", "output_names",
           "write_pngs", "compress_images", "compress_batch", "decompress_bytes", "decompress_batch",
           "decode_payload", "run_decoder", "compress_latent",
           "decompress_latent", "compress_files", "decompress_files", "load_checkpoint_for_codec", "read_images",
           "choose_payload", "decoder_hash", "find_decoder", "missing_decoder_parts", "prepare_codec", "rate_line", "DECODER_PARTS", "SUFFIX"]
