"""`photoscribe scan --cluster`: the scan's per-photo stages as Ray Data operators.

The driver (this machine) walks the folders and decides exactly as a local scan does;
reading, hashing and decoding, CLIP, captions and the metadata writes run on the
cluster's nodes; every result comes back to the driver, the index's only writer of
photo rows. Ray is an optional extra (``pip install 'photoscribe[cluster]'``): nothing
here imports it until a cluster scan starts.
"""
