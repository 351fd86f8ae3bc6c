"""pycompgen: compression and generation of faces from edge maps (Compgen)."""
__version__ = "0.1.0"
