"""API keys of the local backend: their scopes (scope.py), minting and checking (keys.py), and the one
reader of the key a request presents (credentials.py)."""
