"""The operator's side: the `whale` command, the embedded default site (`whale up` /
`whale down`), the images, the lesson registry mirror, the host firewall and the hub's
configuration."""
