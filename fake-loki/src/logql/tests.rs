//! Engine tests: parser tables, evaluation over in-memory streams, the Loki 3.7.6 golden answers.
