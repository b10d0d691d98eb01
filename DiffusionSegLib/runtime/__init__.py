"""Services a running job uses, shared by every method: the device (devices), the dtype policy
(dtypes), CPU threads (threads), seeded noise per slice (seeding), the warm model cache
(model_cache), the per-image feature cache (feature_cache) and cancellation checks inside the
networks (cancel_hooks).
"""
