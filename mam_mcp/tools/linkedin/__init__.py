"""The LinkedIn toolsets (hosted only): `intent` (the default one), `signals`, `posts` and `sessions`,
and what they share: `arguments`, `access` (the client, the account to act as, progress while a slow
call runs) and `presentation` (what agents read; LinkedIn text is untrusted and fenced like mail).
"""
