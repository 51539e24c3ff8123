"""The OpenAI-compatible chat client and API-key handling, shared by the teacher and the judge."""
