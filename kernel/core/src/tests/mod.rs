//! Host tests of the capability engine and the object model.

mod caps;
mod exhaustive;
mod fastpath;
mod ipc;
mod model;
mod objects;
mod security;
mod vcpu;
