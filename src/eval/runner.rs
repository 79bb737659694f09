//! Running an evaluation: k samples per item, each with its own derived seed, graded with
//! the benchmark's rule set, appended to the sample log as it completes. Samples are grouped
//! into calls as the backend asks ([`Batching`]: one per call for HTTP, several items' samples
//! per call for the embedded model), and calls are spread over `concurrency` threads; since
//! every sample's seed derives from (seed, item, sample index), the results do not depend on
//! batching, concurrency or order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::backend::{Backend, Batching, SampleRequest, Sampling};
use super::log::{SampleLog, SampleRecord};
use super::EvalError;
use crate::bench::Item;
use crate::verify::Grader;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Task {
    bench: usize,
    item: usize,
    sample: u32,
}

/// Groups tasks (in order) into calls of at most `batching.max_samples`, never mixing items
/// when `batching.one_item`.
fn batches(tasks: &[Task], batching: Batching) -> Vec<Vec<Task>> {
    let max = batching.max_samples.max(1);
    let mut out: Vec<Vec<Task>> = Vec::new();
    for &task in tasks {
        let fits = out.last().is_some_and(|b: &Vec<Task>| {
            b.len() < max
                && !(batching.one_item
                    && b.first()
                        .is_some_and(|f| (f.bench, f.item) != (task.bench, task.item)))
        });
        match out.last_mut() {
            Some(batch) if fits => batch.push(task),
            _ => out.push(vec![task]),
        }
    }
    out
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

    let calls = batches(&tasks, backend.batching());
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
                let Some(call) = calls.get(t) else { return };
                // one record per task, in the call's order
                for (task, record) in call
                    .iter()
                    .zip(produce(benchmarks, call, backend, settings))
                {
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

/// One call: the requests, the responses (or the backend's errors), graded. Latency is the
/// call's wall time, shared by the samples of a batch.
fn produce(
    benchmarks: &[PreparedBenchmark],
    call: &[Task],
    backend: &dyn Backend,
    settings: &LoopSettings,
) -> Vec<SampleRecord> {
    let requests: Vec<SampleRequest> = call
        .iter()
        .map(|task| {
            let bench = &benchmarks[task.bench];
            let item = &bench.items[task.item];
            SampleRequest {
                benchmark: bench.slug.clone(),
                item_id: item.id.clone(),
                sample: task.sample,
                seed: crate::seed::derive_seed(settings.seed, &item.id, task.sample),
                system: settings.system.clone(),
                prompt: bench.prompts[task.item].clone(),
                images: item.images.iter().filter_map(|i| i.bytes.clone()).collect(),
                sampling: settings.sampling.clone(),
            }
        })
        .collect();
    let start = Instant::now();
    let mut results = if requests.len() == 1 {
        vec![backend.sample(&requests[0])]
    } else {
        backend.sample_batch(&requests)
    };
    let latency_ms = start.elapsed().as_millis() as u64;
    // A backend answering fewer samples than asked fails the rest rather than losing them.
    results.resize_with(requests.len(), || {
        Err(super::backend::BackendError::Failed(
            "the backend returned fewer samples than requested".into(),
        ))
    });
    call.iter()
        .zip(requests)
        .zip(results)
        .map(|((task, request), result)| {
            let bench = &benchmarks[task.bench];
            let item = &bench.items[task.item];
            let mut record = SampleRecord {
                benchmark: request.benchmark,
                item_id: request.item_id,
                sample: request.sample,
                seed: request.seed,
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
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(items: &[(usize, usize, u32)]) -> Vec<Task> {
        items
            .iter()
            .flat_map(|&(bench, item, k)| {
                (0..k).map(move |sample| Task {
                    bench,
                    item,
                    sample,
                })
            })
            .collect()
    }

    #[test]
    fn batches_respect_the_size_and_never_mix_items_when_asked() {
        let all = tasks(&[(0, 0, 3), (0, 1, 3), (1, 0, 2)]);
        let one_each = batches(&all, Batching::default());
        assert_eq!(one_each.len(), 8);
        let per_item = batches(
            &all,
            Batching {
                max_samples: 2,
                one_item: true,
            },
        );
        let sizes: Vec<usize> = per_item.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1, 2, 1, 2]);
        for b in &per_item {
            assert!(b
                .iter()
                .all(|t| (t.bench, t.item) == (b[0].bench, b[0].item)));
        }
        let mixed = batches(
            &all,
            Batching {
                max_samples: 4,
                one_item: false,
            },
        );
        let sizes: Vec<usize> = mixed.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 4]);
        assert_eq!(mixed.concat(), all);
    }
}
