"""HTTP routes: path, status, response model, rate limit and one service call each."""
