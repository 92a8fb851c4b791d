//! What one adapter call's store may allocate: linear memory counted over *all* its memories
//! (a component holds several core instances, and a module may declare many memories), table
//! elements per table, and how many instances, memories and tables it may create at all.
//! Remembers which limit was hit, so the call's error can name it.

/// Core instances one call may create (a component instantiates several: Python adapters about
/// a dozen).
pub const MAX_INSTANCES: usize = 64;
/// Linear memories one call may create.
pub const MAX_MEMORIES: usize = 16;
/// Tables one call may create.
pub const MAX_TABLES: usize = 64;
/// Elements one table may hold (CPython's function table has about 10,000).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// A store's limiter.
pub struct AdapterLimiter {
    /// Bytes of linear memory, all memories together.
    memory_bytes: usize,
    table_elements: usize,
    /// Bytes the store's memories hold now.
    memory_used: usize,
    /// The limit that stopped the call, if one did.
    pub hit: Option<String>,
}

impl AdapterLimiter {
    /// At most `memory_bytes` of linear memory in all and `table_elements` per table.
    pub fn new(memory_bytes: usize, table_elements: usize) -> AdapterLimiter {
        AdapterLimiter {
            memory_bytes,
            table_elements,
            memory_used: 0,
            hit: None,
        }
    }

    fn refuse(&mut self, limit: String) -> wasmtime::Result<bool> {
        self.hit = Some(limit.clone());
        Err(wasmtime::Error::msg(limit))
    }
}

impl wasmtime::ResourceLimiter for AdapterLimiter {
    /// Called for every memory a store creates (from 0) and every growth: the running total
    /// is what the call holds.
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_used.saturating_sub(current).saturating_add(desired);
        if total > self.memory_bytes {
            return self.refuse(format!(
                "memory limit of {} MiB (all of the call's memories together)",
                self.memory_bytes >> 20
            ));
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return self.refuse(format!("table limit of {} elements", self.table_elements));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// The engine settings adapters run under: only the WebAssembly features adapters need. Threads
/// (shared memories grow without asking the limiter), garbage-collected types and stack
/// switching are not even built into the engine (see `host/Cargo.toml`); this turns off the
/// proposals that remain and that adapters do not use.
pub fn restrict_features(config: &mut wasmtime::Config) {
    config.wasm_gc(false);
    config.wasm_stack_switching(false);
}

/// Bytes of linear memory a pool slot keeps mapped after its instance is gone: a fresh
/// instance of the same adapter then finds its first pages (stack, data, the allocator's first
/// chunks) without faulting them in again.
const KEEP_RESIDENT: usize = 1 << 20;

/// Wasmtime's pooling instance allocator with `instances` slots, each with room for the most a
/// call may create ([`MAX_INSTANCES`] core instances, [`MAX_MEMORIES`] memories, [`MAX_TABLES`]
/// tables): so a call that holds a slot never finds the pool exhausted, whatever its
/// component's shape. Memory slots are 4 GiB reservations (address space, not memory), so
/// guests' loads and stores need no bounds checks; copy-on-write images make a fresh instance
/// cost what it touches.
pub fn instance_pool(instances: u32) -> wasmtime::InstanceAllocationStrategy {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .max_core_instances_per_component(MAX_INSTANCES as u32)
        .total_core_instances(instances * MAX_INSTANCES as u32)
        .max_memories_per_component(MAX_MEMORIES as u32)
        .max_memories_per_module(MAX_MEMORIES as u32)
        .total_memories(instances * MAX_MEMORIES as u32)
        .max_tables_per_component(MAX_TABLES as u32)
        .max_tables_per_module(MAX_TABLES as u32)
        .total_tables(instances * MAX_TABLES as u32)
        .table_elements(MAX_TABLE_ELEMENTS)
        .total_stacks(instances)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10);
    wasmtime::InstanceAllocationStrategy::Pooling(pool)
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Instance, Module, Store};

    use super::*;

    const MIB: usize = 1 << 20;
    const PAGE: usize = 64 << 10;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        restrict_features(&mut config);
        Engine::new(&config).unwrap()
    }

    fn store(engine: &Engine, memory_bytes: usize) -> Store<AdapterLimiter> {
        let mut store = Store::new(engine, AdapterLimiter::new(memory_bytes, 10_000));
        store.limiter(|limiter| limiter);
        store
    }

    #[test]
    fn memories_are_counted_together_not_one_by_one() {
        let engine = engine();
        // Two memories of 40 MiB each: either fits a 64 MiB limit alone, both do not.
        let pages = 40 * MIB / PAGE;
        let wat = format!("(module (memory {pages}) (memory {pages}))");
        let module = Module::new(&engine, wat::parse_str(&wat).unwrap()).unwrap();
        let mut store = store(&engine, 64 * MIB);
        let error = Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(format!("{error:#}").contains("memory limit of 64 MiB"), "{error:#}");
        assert!(store.data().hit.is_some());
        let mut roomy = self::store(&engine, 128 * MIB);
        Instance::new(&mut roomy, &module, &[]).expect("80 MiB fit in 128 MiB");
    }

    #[test]
    fn growth_counts_against_the_total() {
        let engine = engine();
        let wat = "(module (memory (export \"m\") 1) (memory 1)
                   (func (export \"grow\") (param i32) (result i32) (memory.grow 0 (local.get 0))))";
        let module = Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut store = store(&engine, 4 * PAGE);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let grow = instance.get_typed_func::<i32, i32>(&mut store, "grow").unwrap();
        // 2 pages held; growing the first memory by 2 reaches 4 pages, by 1 more does not fit.
        assert_eq!(grow.call(&mut store, 2).unwrap(), 1);
        assert!(grow.call(&mut store, 1).is_err());
        assert!(store.data().hit.as_deref().unwrap().contains("memory limit"));
    }

    #[test]
    fn a_module_with_more_memories_than_allowed_does_not_instantiate() {
        let engine = engine();
        let wat = format!("(module {})", "(memory 0) ".repeat(MAX_MEMORIES + 1));
        let module = Module::new(&engine, wat::parse_str(&wat).unwrap()).unwrap();
        let mut store = store(&engine, 128 * MIB);
        assert!(Instance::new(&mut store, &module, &[]).is_err());
        let fits = Module::new(
            &engine,
            wat::parse_str(format!("(module {})", "(memory 0) ".repeat(MAX_MEMORIES))).unwrap(),
        )
        .unwrap();
        let mut store = self::store(&engine, 128 * MIB);
        Instance::new(&mut store, &fits, &[]).expect("the maximum number of memories");
    }

    #[test]
    fn shared_memories_and_gc_types_are_refused_at_compile_time() {
        let engine = engine();
        let shared = Module::new(&engine, wat::parse_str("(module (memory 1 65536 shared))").unwrap());
        assert!(
            shared.is_err(),
            "a shared memory (which grows without the limiter) compiled"
        );
        let gc = Module::new(&engine, wat::parse_str("(module (type (struct (field i32))))").unwrap());
        assert!(gc.is_err(), "a GC type compiled");
    }
}
