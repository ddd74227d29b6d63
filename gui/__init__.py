"""Finetune Studio's Qt GUI: thin adapters over engine objects. Only Qt lives here."""
