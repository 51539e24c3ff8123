"""Filtering rationales: rule checks and the optional LLM judge; the filtered stage."""
