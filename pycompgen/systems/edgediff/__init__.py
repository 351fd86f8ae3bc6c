"""Edge-guided diffusion compression (paper 002): ``system`` (stages vae -> een -> denoiser -> entropy), ``receiver``
(quantisation, EEN edges, DDIM denoising from the matched timestep, lost-region channel and completion, files)."""
