"""The ground floor of How to Whale: what the kernel, the server extension, the hub and
the lesson tools all import.

- `errors`: BundleError, the one refusal type.
- `envfile`: docker.env files (read and write).
- `certs`: reading and checking the PEM files of a bundle.
- `bundle`: a checked credentials bundle, its Docker client, and the one writer of
  bundle directories (`write_bundle_dir`).
- `archives`: uploaded bundles (Carina zips, `docker context export` archives).
- `store`: installing bundles atomically behind one stable path.
- `explain`: the one place that turns engine failures into a sentence for a learner.
- `names`: the injective encoding of learner names into the names of their objects.
- `layout`: the state directory, the paths below it, and the labels on Docker objects.

At import time these need only the standard library and `cryptography`; the Docker SDK
is imported inside the functions that talk to an engine (the kernel must start fast).
"""

try:  # written by the build (hatchling's version hook) from labextension/package.json
    from ._version import __version__
except ImportError:  # a source tree that was never installed
    __version__ = "0+unknown"
