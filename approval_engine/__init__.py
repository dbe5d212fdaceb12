"""The domain core: change requests, proposals, policy, editors, PR backends, store, audit."""
