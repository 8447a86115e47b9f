"""The JupyterHub side of How to Whale at run time: the spawner, the engine providers,
sandbox engines (their containers, certificates and disks) and the janitor."""
