"""Finding features: Feature Scan (prompt and image), Find Features (contrast), heatmaps, the feature picker's route."""
