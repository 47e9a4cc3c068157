//! The GICv3 virtual CPU interface the kernel programs for a guest, and the
//! software state that feeds it: which virtual interrupts wait for a list
//! register, which level-sensitive lines are high.
//!
//! Register layouts: GIC architecture specification (IHI 0069H) §12.5:
//! `ICH_LR<n>_EL2` (12.5.10), ICH_HCR_EL2 (12.5.5), ICH_MISR_EL2 (12.5.11),
//! ICH_VTR_EL2 (12.5.13), ICH_EISR_EL2 (12.5.4), ICH_ELRSR_EL2 (12.5.6).
//!
//! The kernel owns the list registers: a VMM asks for an interrupt to be
//! pending (edge) or for a line to be high or low (level), and the kernel
//! puts the highest-priority waiting interrupts into free list registers
//! whenever the guest is about to run or a maintenance interrupt says some
//! have been consumed. A level-sensitive interrupt is given an EOI
//! maintenance request, so when the guest ends it the kernel looks at the
//! line again and pends it anew while it stays high ("resample on EOI").

/// Interrupt IDs a guest's virtual GIC has (SGIs 0..16, PPIs 16..32, SPIs
/// 32..1020); 1020..1024 are special and never injected.
pub const MAX_INTID: u32 = 1020;
const WORDS: usize = 1024 / 64;

/// `ICH_LR<n>_EL2`.State (bits 63:62).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// Free.
    Invalid,
    /// Pending: the guest has not acknowledged it.
    Pending,
    /// Active: acknowledged, not yet ended.
    Active,
    /// Pending again while active (an edge that fired twice).
    PendingActive,
}

/// One list register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ListRegister(pub u64);

impl ListRegister {
    const STATE_SHIFT: u32 = 62;
    const GROUP1: u64 = 1 << 60;
    const HW: u64 = 1 << 61;
    /// With HW = 0: a maintenance interrupt when the guest ends it.
    const EOI: u64 = 1 << 41;
    const PRIORITY_SHIFT: u32 = 48;

    /// A pending interrupt `intid` (a software interrupt, HW = 0).
    pub fn pending(intid: u32, priority: u8, group1: bool, eoi_maintenance: bool) -> ListRegister {
        let mut v = u64::from(intid)
            | (u64::from(priority) << Self::PRIORITY_SHIFT)
            | (0b01 << Self::STATE_SHIFT);
        if group1 {
            v |= Self::GROUP1;
        }
        if eoi_maintenance {
            v |= Self::EOI;
        }
        ListRegister(v)
    }

    /// Its state.
    pub fn state(self) -> LrState {
        match self.0 >> Self::STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }

    /// The same interrupt in `state`.
    pub fn with_state(self, state: LrState) -> ListRegister {
        let bits = match state {
            LrState::Invalid => 0,
            LrState::Pending => 1,
            LrState::Active => 2,
            LrState::PendingActive => 3,
        };
        ListRegister((self.0 & !(0b11 << Self::STATE_SHIFT)) | (bits << Self::STATE_SHIFT))
    }

    /// The virtual INTID.
    pub fn intid(self) -> u32 {
        self.0 as u32
    }

    /// The priority it was injected with.
    pub fn priority(self) -> u8 {
        (self.0 >> Self::PRIORITY_SHIFT) as u8
    }

    /// Whether the slot is free.
    pub fn is_free(self) -> bool {
        self.state() == LrState::Invalid
    }

    /// Whether it asks for a maintenance interrupt on EOI.
    pub fn eoi_maintenance(self) -> bool {
        self.0 & (Self::EOI | Self::HW) == Self::EOI
    }
}

/// What ICH_VTR_EL2 says about the virtual interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vtr {
    /// Implemented list registers (ListRegs + 1, at most 16).
    pub list_registers: usize,
    /// Implemented priority bits (PRIbits + 1).
    pub priority_bits: u8,
}

impl Vtr {
    /// Decodes ICH_VTR_EL2.
    pub fn decode(vtr: u64) -> Vtr {
        Vtr {
            list_registers: ((vtr & 0x1f) as usize + 1).min(16),
            priority_bits: ((vtr >> 29) & 0b111) as u8 + 1,
        }
    }

    /// How many ICH_AP0R/AP1R registers carry state (one per 32 active
    /// priorities: 5 bits → 1, 6 → 2, 7 → 4).
    pub fn active_priority_registers(self) -> usize {
        match self.priority_bits {
            0..=5 => 1,
            6 => 2,
            _ => 4,
        }
    }
}

/// ICH_HCR_EL2: En (bit 0) enables the virtual CPU interface.
pub const HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.UIE (bit 1): maintenance interrupt when at most one list
/// register is valid (so more can be filled).
pub const HCR_UIE: u64 = 1 << 1;
/// ICH_MISR_EL2.EOI (bit 0): some list register asked for EOI maintenance
/// and was ended (ICH_EISR_EL2 says which).
pub const MISR_EOI: u64 = 1 << 0;
/// ICH_MISR_EL2.U (bit 1): underflow (UIE condition).
pub const MISR_U: u64 = 1 << 1;

/// How a VMM drives one virtual interrupt line (`Vcpu::SetIrq` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqLine {
    /// The virtual INTID.
    pub intid: u32,
    /// Its priority (the guest's GICD/GICR_IPRIORITYR value).
    pub priority: u8,
    /// Group 1 (Linux uses group 1 only).
    pub group1: bool,
    /// Level-sensitive (else edge: `high` makes it pending once).
    pub level: bool,
    /// The line's new state.
    pub high: bool,
}

/// A Vcpu's virtual interrupts that are not (or not only) in list
/// registers: bitmaps over INTIDs plus each one's priority.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct VirtualIrqs {
    /// Waiting for a list register.
    waiting: [u64; WORDS],
    /// Level-sensitive interrupts.
    level: [u64; WORDS],
    /// Level-sensitive lines now high.
    high: [u64; WORDS],
    /// Group 1 interrupts.
    group1: [u64; WORDS],
    /// Priority of each INTID.
    priority: [u8; 1024],
}

impl Default for VirtualIrqs {
    fn default() -> Self {
        VirtualIrqs {
            waiting: [0; WORDS],
            level: [0; WORDS],
            high: [0; WORDS],
            group1: [0; WORDS],
            priority: [0; 1024],
        }
    }
}

fn bit(set: &[u64; WORDS], intid: u32) -> bool {
    set[intid as usize / 64] & (1 << (intid % 64)) != 0
}

fn assign(set: &mut [u64; WORDS], intid: u32, on: bool) {
    let (w, b) = (intid as usize / 64, 1u64 << (intid % 64));
    if on {
        set[w] |= b;
    } else {
        set[w] &= !b;
    }
}

impl VirtualIrqs {
    /// Applies a VMM's request on `line`, given the list registers as they
    /// are now (`lrs`, which it may change). Returns whether the guest now
    /// has something pending (a thread waiting in `wfi` should wake).
    /// INTIDs at or above [`MAX_INTID`] are refused by the caller.
    pub fn set_line(&mut self, line: IrqLine, lrs: &mut [ListRegister]) -> bool {
        let id = line.intid;
        assign(&mut self.level, id, line.level);
        assign(&mut self.group1, id, line.group1);
        self.priority[id as usize] = line.priority;
        if line.level {
            assign(&mut self.high, id, line.high);
        }
        let in_lr = lrs.iter().position(|lr| !lr.is_free() && lr.intid() == id);
        if line.high {
            match in_lr {
                // Already pending: nothing changes.
                Some(i) if matches!(lrs[i].state(), LrState::Pending | LrState::PendingActive) => {}
                // Active (being handled): pending again once ended; for an
                // edge, mark it pending-and-active now.
                Some(i) if !line.level => lrs[i] = lrs[i].with_state(LrState::PendingActive),
                Some(_) => {} // a level line resamples at EOI
                None => assign(&mut self.waiting, id, true),
            }
        } else if line.level {
            // The line dropped: a pending (not yet acknowledged) interrupt
            // is withdrawn; one being handled stays active.
            assign(&mut self.waiting, id, false);
            if let Some(i) = in_lr {
                match lrs[i].state() {
                    LrState::Pending => lrs[i] = ListRegister(0),
                    LrState::PendingActive => lrs[i] = lrs[i].with_state(LrState::Active),
                    _ => {}
                }
            }
        }
        self.fill(lrs);
        self.anything_pending(lrs)
    }

    /// Moves the highest-priority waiting interrupts into free list
    /// registers, and swaps a waiting interrupt for a merely pending one of
    /// lower priority when none is free: the guest always has the most
    /// urgent interrupts in its list registers. Returns whether some still
    /// wait (the caller asks for an underflow maintenance interrupt then).
    pub fn fill(&mut self, lrs: &mut [ListRegister]) -> bool {
        while let Some(id) = self.best_waiting() {
            let priority = self.priority[id as usize];
            let slot = match lrs.iter().position(|lr| lr.is_free()) {
                Some(free) => free,
                None => {
                    // The least urgent interrupt the guest has not taken yet.
                    let Some((victim, lr)) = lrs
                        .iter()
                        .enumerate()
                        .filter(|(_, lr)| lr.state() == LrState::Pending)
                        .max_by_key(|(i, lr)| (lr.priority(), *i))
                    else {
                        break;
                    };
                    if lr.priority() <= priority {
                        break;
                    }
                    assign(&mut self.waiting, lr.intid(), true);
                    victim
                }
            };
            assign(&mut self.waiting, id, false);
            lrs[slot] =
                ListRegister::pending(id, priority, bit(&self.group1, id), bit(&self.level, id));
        }
        self.waiting()
    }

    /// The waiting INTID with the highest priority (lowest value), lowest
    /// INTID first among equals.
    fn best_waiting(&self) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for (w, &word) in self.waiting.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let id = (w * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                let p = self.priority[id as usize];
                if best.is_none_or(|(bp, _)| p < bp) {
                    best = Some((p, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// The guest ended the interrupt that list register held (its EOI
    /// maintenance bit was set, and the hardware has freed it): a level
    /// line still high is pending again.
    pub fn ended(&mut self, intid: u32) {
        if intid < MAX_INTID && bit(&self.level, intid) && bit(&self.high, intid) {
            assign(&mut self.waiting, intid, true);
        }
    }

    /// Whether some interrupt waits for a free list register.
    pub fn waiting(&self) -> bool {
        self.waiting.iter().any(|&w| w != 0)
    }

    /// Whether any interrupt waits or is pending in a list register.
    pub fn anything_pending(&self, lrs: &[ListRegister]) -> bool {
        self.waiting.iter().any(|&w| w != 0)
            || lrs
                .iter()
                .any(|lr| matches!(lr.state(), LrState::Pending | LrState::PendingActive))
    }

    /// Whether `intid` is a level line that is high.
    pub fn is_high(&self, intid: u32) -> bool {
        intid < MAX_INTID && bit(&self.level, intid) && bit(&self.high, intid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(intid: u32, priority: u8) -> IrqLine {
        IrqLine {
            intid,
            priority,
            group1: true,
            level: false,
            high: true,
        }
    }

    #[test]
    fn list_register_fields_follow_the_spec() {
        let lr = ListRegister::pending(27, 0xa0, true, true);
        // State 01, Group 1, priority 0xa0 at 55:48, EOI at 41, vINTID 27.
        assert_eq!(lr.0, (1 << 62) | (1 << 60) | (0xa0 << 48) | (1 << 41) | 27);
        assert_eq!(lr.state(), LrState::Pending);
        assert!(lr.eoi_maintenance());
        assert_eq!(lr.with_state(LrState::Active).state(), LrState::Active);
        let vtr = Vtr::decode((4 << 29) | 3);
        assert_eq!((vtr.list_registers, vtr.priority_bits), (4, 5));
        assert_eq!(vtr.active_priority_registers(), 1);
    }

    #[test]
    fn more_pending_than_list_registers_drain_by_priority() {
        let mut irqs = VirtualIrqs::default();
        let mut lrs = [ListRegister::default(); 2];
        for (id, p) in [(40, 0x80), (41, 0x20), (42, 0x40), (43, 0x60)] {
            irqs.set_line(edge(id, p), &mut lrs);
        }
        // The two most urgent are in the list registers (43 came in while
        // 40 and 41 held them, and displaced 40); the rest wait.
        let ids: [u32; 2] = [lrs[0].intid(), lrs[1].intid()];
        assert_eq!(ids, [42, 41]);
        assert!(irqs.fill(&mut lrs), "two still wait");
        // The guest takes and ends both: the next best two come in.
        lrs = [ListRegister::default(); 2];
        assert!(!irqs.fill(&mut lrs));
        assert_eq!([lrs[0].intid(), lrs[1].intid()], [43, 40]);
    }

    #[test]
    fn active_interrupts_are_never_displaced() {
        let mut irqs = VirtualIrqs::default();
        let mut lrs = [ListRegister::default(); 1];
        irqs.set_line(edge(50, 0x80), &mut lrs);
        lrs[0] = lrs[0].with_state(LrState::Active);
        // A more urgent one waits: the guest is handling 50.
        assert!(irqs.set_line(edge(51, 0x10), &mut lrs));
        assert_eq!((lrs[0].intid(), lrs[0].state()), (50, LrState::Active));
        assert!(irqs.waiting());
    }

    /// Whatever is injected, the guest takes interrupts in priority order
    /// (modelled: it takes the most urgent pending list register, ends it,
    /// and the kernel refills at underflow, as its maintenance does).
    #[test]
    fn delivery_follows_priority_whatever_the_injection_order() {
        let mut seed = 0x1234_5678u32;
        for registers in 1..=4 {
            let mut irqs = VirtualIrqs::default();
            let mut lrs = [ListRegister::default(); 4];
            let lrs = &mut lrs[..registers];
            let mut injected = [0u8; 24];
            for (i, p) in injected.iter_mut().enumerate() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                // Distinct priorities: i in the high bits, noise below.
                *p = ((i as u8) << 3) | ((seed >> 16) as u8 & 7);
            }
            // Inject in a scrambled order.
            for k in 0..injected.len() {
                let i = (k * 7) % injected.len();
                irqs.set_line(edge(100 + i as u32, injected[i]), lrs);
            }
            let mut taken = [0u8; 24];
            for slot in taken.iter_mut() {
                let (i, lr) = lrs
                    .iter()
                    .enumerate()
                    .filter(|(_, lr)| lr.state() == LrState::Pending)
                    .min_by_key(|(_, lr)| lr.priority())
                    .expect("something pending");
                *slot = lr.priority();
                lrs[i] = ListRegister(0);
                if lrs.iter().filter(|lr| !lr.is_free()).count() <= 1 {
                    irqs.fill(lrs);
                }
            }
            let mut sorted = injected;
            sorted.sort_unstable();
            assert_eq!(taken, sorted, "{registers} list registers");
        }
    }

    #[test]
    fn level_lines_resample_on_eoi_and_withdraw_when_low() {
        let mut irqs = VirtualIrqs::default();
        let mut lrs = [ListRegister::default(); 4];
        let mut line = IrqLine {
            intid: 33,
            priority: 0xa0,
            group1: true,
            level: true,
            high: true,
        };
        assert!(irqs.set_line(line, &mut lrs));
        assert!(lrs[0].eoi_maintenance());
        // The guest acknowledges and ends it while the line is still high:
        // it comes back.
        lrs[0] = ListRegister(0);
        irqs.ended(33);
        assert!(irqs.anything_pending(&lrs));
        irqs.fill(&mut lrs);
        assert_eq!(lrs[0].intid(), 33);
        // The line drops before the guest takes it: withdrawn.
        line.high = false;
        assert!(!irqs.set_line(line, &mut lrs));
        assert!(lrs.iter().all(|lr| lr.is_free()));
        irqs.ended(33);
        assert!(!irqs.anything_pending(&lrs));
    }

    #[test]
    fn an_edge_while_active_becomes_pending_and_active() {
        let mut irqs = VirtualIrqs::default();
        let mut lrs = [ListRegister::default(); 1];
        irqs.set_line(edge(5, 0), &mut lrs);
        lrs[0] = lrs[0].with_state(LrState::Active);
        assert!(irqs.set_line(edge(5, 0), &mut lrs));
        assert_eq!(lrs[0].state(), LrState::PendingActive);
    }
}
