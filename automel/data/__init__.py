"""Data layer: HW4 layout, feature store, batching, audio preparation and the synthetic corpus."""
