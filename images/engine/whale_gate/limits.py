"""The gate's limits: sizes it reads, connections it keeps, how long it waits, and the
oldest API version it accepts."""
MAX_BODY = 1 << 20          # JSON request bodies: 1 MiB
MAX_HEAD = 64 * 1024        # a request's or a response's header block
BUFSIZE = 64 * 1024
MIN_API = 24                # /v1.NN with NN below this is refused
MAX_CONNECTIONS = 256       # open client connections; more are closed at once (memory)
MAX_PER_ADDRESS = 128       # of those, from one address (the hub's checks keep a share)
HANDSHAKE_TIMEOUT = 10      # seconds for a TLS handshake
KEEPALIVE_IDLE = 120        # seconds an open connection may wait for its next request
HEAD_TIMEOUT = 15           # seconds a request head may take once it has begun
BODY_IDLE = 60              # seconds a request body may pause before the request is dropped
