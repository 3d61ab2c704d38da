"""Normal estimators: what tells the polish stage which way the surface should face."""
