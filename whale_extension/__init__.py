"""The jupyter_server extension of How to Whale (engine health, credentials, port links)."""
