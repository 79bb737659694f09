//! Running an evaluation: k samples per item, each with its own derived seed, graded with
//! the benchmark's rule set, appended to the sample log as it completes. Work is spread
//! over `concurrency` threads; since every sample's seed derives from (seed, item, sample
//! index), the results do not depend on concurrency or order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::backend::{Backend, SampleRequest, Sampling};
use super::grade::Grader;
use super::log::{SampleLog, SampleRecord};
use super::EvalError;
use crate::bench::Item;

/// One benchmark's items, prompts and grader, ready to run.
pub struct PreparedBenchmark {
    pub slug: String,
    pub name: String,
    pub items: Vec<Item>,
    /// Rendered user-turn text per item (same order as `items`).
    pub prompts: Vec<String>,
    pub grader: Arc<dyn Grader>,
}

/// Settings of the sampling loop.
pub struct LoopSettings {
    pub k: u32,
    pub seed: u64,
    pub sampling: Sampling,
    pub system: String,
    pub concurrency: usize,
    pub progress: bool,
}

struct Task {
    bench: usize,
    item: usize,
    sample: u32,
}

/// Produces every (item, sample) not already in `done`, appending each to the log in
/// `run_dir`. Returns how many samples were produced now.
pub fn run_samples(
    benchmarks: &[PreparedBenchmark],
    backend: &dyn Backend,
    settings: &LoopSettings,
    run_dir: &Path,
    done: &HashSet<(String, String, u32)>,
) -> Result<usize, EvalError> {
    let log = SampleLog::open(run_dir)?;
    let mut tasks = Vec::new();
    for (b, bench) in benchmarks.iter().enumerate() {
        for (i, item) in bench.items.iter().enumerate() {
            for sample in 0..settings.k {
                if !done.contains(&(bench.slug.clone(), item.id.clone(), sample)) {
                    tasks.push(Task {
                        bench: b,
                        item: i,
                        sample,
                    });
                }
            }
        }
    }
    let multi = MultiProgress::with_draw_target(if settings.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template(
        "{prefix:>11} [{bar:30}] {pos}/{len} samples {elapsed_precise} eta {eta} {msg}",
    )
    .map_err(|e| EvalError::Internal(e.to_string()))?
    .progress_chars("=> ");
    let bars: Vec<ProgressBar> = benchmarks
        .iter()
        .map(|bench| {
            let total = bench.items.len() as u64 * settings.k as u64;
            let already = bench
                .items
                .iter()
                .flat_map(|item| (0..settings.k).map(move |s| (item.id.clone(), s)))
                .filter(|(id, s)| done.contains(&(bench.slug.clone(), id.clone(), *s)))
                .count() as u64;
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(style.clone());
            bar.set_prefix(bench.name.clone());
            bar.set_position(already);
            bar
        })
        .collect();

    let next = AtomicUsize::new(0);
    let produced = AtomicUsize::new(0);
    let first_error: std::sync::Mutex<Option<EvalError>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..settings.concurrency.max(1) {
            scope.spawn(|| loop {
                if first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    return;
                }
                let t = next.fetch_add(1, Ordering::SeqCst);
                let Some(task) = tasks.get(t) else { return };
                let bench = &benchmarks[task.bench];
                let record = produce(bench, task.item, task.sample, backend, settings);
                match log.append(&record) {
                    Ok(()) => {
                        produced.fetch_add(1, Ordering::SeqCst);
                        bars[task.bench].inc(1);
                    }
                    Err(e) => {
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    for bar in &bars {
        bar.finish();
    }
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(produced.into_inner())
}

/// One sample: request, response (or the backend's error), grade.
fn produce(
    bench: &PreparedBenchmark,
    item_index: usize,
    sample: u32,
    backend: &dyn Backend,
    settings: &LoopSettings,
) -> SampleRecord {
    let item = &bench.items[item_index];
    let seed = crate::seed::derive_seed(settings.seed, &item.id, sample);
    let request = SampleRequest {
        benchmark: bench.slug.clone(),
        item_id: item.id.clone(),
        sample,
        seed,
        system: settings.system.clone(),
        prompt: bench.prompts[item_index].clone(),
        images: item.images.iter().filter_map(|i| i.bytes.clone()).collect(),
        sampling: settings.sampling.clone(),
    };
    let start = Instant::now();
    let result = backend.sample(&request);
    let latency_ms = start.elapsed().as_millis() as u64;
    let mut record = SampleRecord {
        benchmark: bench.slug.clone(),
        item_id: item.id.clone(),
        sample,
        seed,
        response: String::new(),
        extracted: None,
        correct: false,
        reward: 0.0,
        components: BTreeMap::new(),
        prompt_tokens: None,
        response_tokens: None,
        finish: String::new(),
        latency_ms,
        error: None,
        fields: item.fields.clone(),
    };
    match result {
        Ok(response) => {
            let options = (!item.options.is_empty()).then_some(item.options.as_slice());
            let grade = bench
                .grader
                .grade(&response.response, &item.answer, options);
            record.extracted = grade.extracted;
            record.correct = grade.correct;
            record.reward = grade.reward;
            record.components = grade.components.into_iter().collect();
            record.response = response.response;
            record.prompt_tokens = response.prompt_tokens;
            record.response_tokens = response.response_tokens;
            record.finish = response.finish;
        }
        Err(e) => {
            record.finish = "error".into();
            record.error = Some(e.to_string());
        }
    }
    record
}

/// Records in a stable order: benchmarks and items as prepared, then sample index.
pub fn sort_records(records: &mut [SampleRecord], benchmarks: &[PreparedBenchmark]) {
    let mut order: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
    for (b, bench) in benchmarks.iter().enumerate() {
        for (i, item) in bench.items.iter().enumerate() {
            order.insert((bench.slug.as_str(), item.id.as_str()), (b, i));
        }
    }
    records.sort_by_key(|r| {
        let pos = order
            .get(&(r.benchmark.as_str(), r.item_id.as_str()))
            .copied()
            .unwrap_or((usize::MAX, usize::MAX));
        (pos, r.sample)
    });
}
