"""`charseq serve`: an OpenAI-compatible HTTP server and a web page (the serve extra)."""
