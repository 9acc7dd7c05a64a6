"""The playground: an emulated Stripe with a supervised fcsync stack on it (worker, beat,
webhook receiver), waits for convergence and the one comparison of the database against the
emulator's truth. `fcsync demo`, bench/ and the integration and chaos tests all run on it."""
