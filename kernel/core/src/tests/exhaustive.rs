//! Bounded exhaustive check: every sequence of up to four capability
//! operations over a tiny state, against the reference model.
//!
//! The state: the root CNode's slots 2 and 3, a 4-slot CNode in root slot 4
//! (its slots 0 and 1 are used), and the root untyped in slot 1: two CNodes,
//! four working slots, one untyped. The 22 operations cover retyping
//! (endpoints, a child untyped, from the child untyped), copy, mint, move,
//! mutate, delete and revoke between those slots. Every prefix of every
//! sequence is compared with the model and checked against the invariants,
//! exploring each distinct prefix once (depth-first, cloning the state).

use super::model::{Addr, Model, Op, check, run};
use crate::testing::{World, layout};
use proptest::test_runner::TestCaseError;
use skyscope_abi::{CapRights, ObjectType};
use std::{println, vec, vec::Vec};

extern crate std;

const DEPTH: usize = 4;

fn alphabet() -> Vec<Op> {
    let (a, b, c, d) = (
        Addr::Top(2),
        Addr::Top(3),
        Addr::Nested(4, 0),
        Addr::Nested(4, 1),
    );
    let ut = Addr::Top(layout::UNTYPED_SLOT);
    let all = CapRights::ALL.bits();
    let retype = |ut, ty, size, dest, offset| Op::Retype {
        ut,
        ty,
        size,
        dest,
        offset,
        count: 1,
    };
    vec![
        retype(ut, ObjectType::Endpoint, 0, None, 2),
        retype(ut, ObjectType::Endpoint, 0, None, 3),
        retype(ut, ObjectType::Endpoint, 0, Some(4), 0),
        retype(ut, ObjectType::Untyped, 8, None, 2),
        retype(a, ObjectType::Endpoint, 0, None, 3),
        Op::Copy {
            src: a,
            dst: b,
            rights: all,
        },
        Op::Copy {
            src: a,
            dst: c,
            rights: CapRights::READ.bits(),
        },
        Op::Copy {
            src: b,
            dst: d,
            rights: all,
        },
        Op::Copy {
            src: c,
            dst: a,
            rights: all,
        },
        Op::Mint {
            src: a,
            dst: b,
            rights: all,
            data: 1,
        },
        Op::Mint {
            src: b,
            dst: c,
            rights: all,
            data: 2,
        },
        Op::Move { src: a, dst: d },
        Op::Move { src: c, dst: b },
        Op::Mutate {
            src: a,
            dst: c,
            data: 3,
        },
        Op::Delete(a),
        Op::Delete(b),
        Op::Delete(c),
        Op::Delete(d),
        Op::Revoke(a),
        Op::Revoke(b),
        Op::Revoke(ut),
        Op::Revoke(Addr::Top(4)),
    ]
}

struct Search {
    ops: Vec<Op>,
    states: u64,
}

impl Search {
    fn explore(
        &mut self,
        world: &World,
        model: &Model,
        depth: usize,
        trail: &mut Vec<usize>,
    ) -> Result<(), TestCaseError> {
        if depth == DEPTH {
            return Ok(());
        }
        for i in 0..self.ops.len() {
            let (mut w, mut m) = (world.clone(), model.clone());
            let op = self.ops[i].clone();
            trail.push(i);
            let real = run(&mut w, &op);
            let expected = m.apply(&op);
            if real != expected {
                return Err(TestCaseError::fail(std::format!(
                    "{trail:?}: kernel {real:?}, model {expected:?}"
                )));
            }
            check(&w, &m).map_err(|e| TestCaseError::fail(std::format!("{trail:?}: {e}")))?;
            if let Err(e) = w.kernel.check_invariants(&[World::root_cap()]) {
                return Err(TestCaseError::fail(std::format!(
                    "{trail:?}: invariant: {e}"
                )));
            }
            self.states += 1;
            self.explore(&w, &m, depth + 1, trail)?;
            trail.pop();
        }
        Ok(())
    }
}

/// Run by `cargo xtask test` (item `host::exhaustive_caps`, release build:
/// about 3 s; 40 s unoptimised).
#[test]
#[ignore = "slow unoptimised; cargo xtask test runs it in release"]
fn every_sequence_of_four_operations() {
    let mut world = World::new();
    // The second CNode (4 slots) in root slot 4.
    world
        .retype(layout::UNTYPED_SLOT, ObjectType::CNode, 2, 4, 1)
        .expect("CNode");
    let model = {
        let mut m = Model::new(&World::new());
        // Bring the model to the same starting point by the same operation.
        m.apply(&Op::Retype {
            ut: Addr::Top(layout::UNTYPED_SLOT),
            ty: ObjectType::CNode,
            size: 2,
            dest: None,
            offset: 4,
            count: 1,
        })
        .expect("model CNode");
        m
    };
    check(&world, &model).expect("same start");
    let mut search = Search {
        ops: alphabet(),
        states: 0,
    };
    let mut trail = Vec::new();
    if let Err(e) = search.explore(&world, &model, 0, &mut trail) {
        panic!("{e}");
    }
    let n = search.ops.len() as u64;
    let sequences: u64 = (1..=DEPTH as u32).map(|k| n.pow(k)).sum();
    println!(
        "exhaustive: {} operations, all {sequences} sequences of length 1..={DEPTH}, {} states checked",
        n, search.states
    );
    assert_eq!(search.states, sequences);
}
