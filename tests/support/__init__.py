"""What the tests share: every helper lives here once, and no test module imports another."""
