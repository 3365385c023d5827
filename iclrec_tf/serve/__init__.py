"""SavedModels for TF Serving: `topk` (pruned top-k), `module` (the serving
signatures and the raw-id vocabulary table) and `saved_model` (versioned export).
"""
