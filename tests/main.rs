//! Integration tests: one binary, real `redis-server` processes.

mod admin;
mod behaviour;
mod cluster;
mod compat;
mod concurrency;
mod conformance;
mod embedding;
mod envoy;
mod events;
mod full_redis;
mod gateways;
mod hardened;
mod hostile_clients;
mod kit;
mod limits;
mod loaders;
mod near_cache;
mod round_trips;
mod sentinel;
mod server;
mod support;
mod tls;
