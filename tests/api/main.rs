//! The integration suite: one binary (fast to link), each test with its own fake mirror
//! node, its own S3 server and its own SQLite file.

mod api;
mod browser;
mod cli;
mod hostile;
mod ingest;
mod ops;
mod properties;
mod reliability;
mod support;
mod vectors;
