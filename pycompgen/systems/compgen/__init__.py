"""Compgen (Pandian et al.): f, g, the ELM h (``networks``) and step 1 / approaches 1-3 (``system``)."""
