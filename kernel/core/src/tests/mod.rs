//! Host tests of the capability engine and the object model.

mod caps;
mod ipc;
mod model;
mod objects;
