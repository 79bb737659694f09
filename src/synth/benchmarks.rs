//! Benchmark-shaped parquet files: for each of the eight benchmarks, items the project
//! composes itself (see [`super::figures`]) written in that benchmark's real Hugging Face
//! schema — the same columns, types, image structs, option encodings and traps (We-Math's
//! `image_path` Image column and names with spaces, MMMU-Pro's `image_1`..`image_7` with
//! nulls and a Python-repr `options` string, null image bytes, text-only rows, `<image1>` /
//! `<image 1>` placeholders, multi-answer letters like "B, D").

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::figures::{png_bytes, problem, Problem};
use super::table::{write_parquet, ImageCell, Table};
use super::SynthError;
use crate::bench::options::option_letter;

/// The slugs this module has generators for (the eight of the paper).
pub const GENERATED: [&str; 8] = [
    "mathverse",
    "dynamath",
    "mmk12",
    "geo3k",
    "mathvision",
    "wemath",
    "logicvista",
    "mmmu-pro",
];

/// Settings of one generation run.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub seed: u64,
    /// Items per benchmark.
    pub rows: usize,
    /// Image side in pixels.
    pub image_size: u32,
    /// Rows per parquet row group (small values exercise multi-row-group reading).
    pub row_group_rows: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 0,
            rows: 24,
            image_size: 112,
            row_group_rows: 1024,
        }
    }
}

/// Writes benchmark `slug`'s generated file to `path` (atomically).
pub fn write_benchmark(slug: &str, path: &Path, config: &SynthConfig) -> Result<(), SynthError> {
    let table = benchmark_table(slug, config)?;
    write_parquet(path, &table.into_batch()?, config.row_group_rows)
}

/// The table of one benchmark.
pub fn benchmark_table(slug: &str, config: &SynthConfig) -> Result<Table, SynthError> {
    // One stream per benchmark, so adding rows to one never changes another.
    let mut rng = ChaCha20Rng::seed_from_u64(crate::seed::derive_seed(config.seed, slug, 0));
    let problems: Vec<Problem> = (0..config.rows)
        .map(|i| problem(i, config.image_size, &mut rng))
        .collect();
    let images: Vec<Vec<u8>> = problems
        .iter()
        .map(|p| png_bytes(&p.image))
        .collect::<Result<_, _>>()
        .map_err(|e| SynthError::Image(e.to_string()))?;
    Ok(match slug {
        "mathverse" => mathverse(&problems, &images),
        "dynamath" => dynamath(&problems, &images),
        "mmk12" => mmk12(&problems, &images),
        "geo3k" => geo3k(&problems, &images),
        "mathvision" => mathvision(&problems, &images),
        "wemath" => wemath(&problems, &images),
        "logicvista" => logicvista(&problems, &images, &mut rng),
        "mmmu-pro" => mmmu_pro(&problems, &images),
        other => return Err(SynthError::UnknownBenchmark(other.to_string())),
    })
}

/// Options with their letters in one benchmark's style, e.g. `"({letter}) {text}"`.
pub fn lettered(options: &[String], style: impl Fn(char, &str) -> String) -> Vec<String> {
    options
        .iter()
        .enumerate()
        .map(|(k, o)| style(option_letter(k), o))
        .collect()
}

fn s(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

fn png(bytes: &[u8], path: String) -> ImageCell {
    ImageCell {
        bytes: Some(bytes.to_vec()),
        path: Some(path),
    }
}

/// MathVerse: five versions per problem; Text Only rows have a null image, one vision row
/// keeps only its path (null bytes), multiple choice lives in the question text.
fn mathverse(problems: &[Problem], images: &[Vec<u8>]) -> Table {
    const VERSIONS: [&str; 5] = [
        "Text Dominant",
        "Text Lite",
        "Vision Intensive",
        "Vision Dominant",
        "Text Only",
    ];
    let n = problems.len();
    let (
        mut sample_index,
        mut problem_index,
        mut version,
        mut question,
        mut image,
        mut answer,
        mut qtype,
    ) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut m_split, mut m_source, mut m_subject, mut m_subfield) =
        (vec![], vec![], vec![], vec![]);
    let (mut query_wo, mut query_cot, mut for_eval) = (vec![], vec![], vec![]);
    for (i, p) in problems.iter().enumerate() {
        let v = VERSIONS[i % VERSIONS.len()];
        let multi_choice = i % 2 == 1;
        let base = if v == "Text Only" {
            p.question_text_only.clone()
        } else {
            p.question.clone()
        };
        let text = if multi_choice {
            let choices: Vec<String> =
                lettered(&p.options, |letter, text| format!("{letter}:{text}"));
            format!("{base}\nChoices:\n{}", choices.join("\n"))
        } else {
            base
        };
        sample_index.push(s((i + 1).to_string()));
        problem_index.push(s((i / VERSIONS.len() + 1).to_string()));
        version.push(s(v));
        image.push(match v {
            "Text Only" => None,
            // The real testmini sample has rows whose bytes were not published.
            _ if i == n - 2 => Some(ImageCell {
                bytes: None,
                path: s(format!("images_version_1-4/image_{i}.png")),
            }),
            _ => Some(png(&images[i], format!("images_version_1-4/image_{i}.png"))),
        });
        answer.push(s(if multi_choice {
            p.correct_letter()
        } else {
            p.answer.clone()
        }));
        qtype.push(s(if multi_choice {
            "multi-choice"
        } else {
            "free-form"
        }));
        m_split.push(s("testmini"));
        m_source.push(s("Spotlight synth"));
        m_subject.push(s(if p.topic.starts_with("geometry") {
            "Plane Geometry"
        } else {
            "Arithmetic"
        }));
        m_subfield.push(s(p.topic));
        query_wo.push(s(format!(
            "Please directly answer the question.\nQuestion: {text}"
        )));
        query_cot.push(s(format!(
            "Please first conduct reasoning, and then answer the question.\nQuestion: {text}"
        )));
        for_eval.push(None);
        question.push(s(text));
    }
    Table::new()
        .string("sample_index", sample_index)
        .string("problem_index", problem_index)
        .string("problem_version", version)
        .string("question", question)
        .image("image", image)
        .string("answer", answer)
        .string("question_type", qtype)
        .string_struct(
            "metadata",
            vec![
                ("split", m_split),
                ("source", m_source),
                ("subject", m_subject),
                ("subfield", m_subfield),
            ],
        )
        .string("query_wo", query_wo)
        .string("query_cot", query_cot)
        .string("question_for_eval", for_eval)
}

/// DynaMath: path string plus `decoded_image`; multiple choice inside the question text as
/// "Choices: (A) .. (B) ..", `answer_type` per row.
fn dynamath(problems: &[Problem], images: &[Vec<u8>]) -> Table {
    let mut t = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (i, p) in problems.iter().enumerate() {
        let id = (i + 1).to_string();
        let path = format!("image/image{id}.png");
        let multi_choice = i % 3 == 2;
        let (question, truth, answer_type) = if multi_choice {
            let choices: Vec<String> =
                lettered(&p.options, |letter, text| format!("({letter}) {text}"));
            (
                format!("{}\nChoices: {}", p.question, choices.join(" ")),
                p.correct_letter(),
                "multiple choice".to_string(),
            )
        } else {
            (
                p.question.clone(),
                p.answer.clone(),
                p.answer_type.to_string(),
            )
        };
        t.0.push(s(id));
        t.1.push(s(question));
        t.2.push(s(path.clone()));
        t.3.push(Some(png(&images[i], path)));
        t.4.push(s(truth));
        t.5.push(s(answer_type));
        t.6.push(s(if p.topic.starts_with("geometry") {
            "plane geometry"
        } else {
            "arithmetic"
        }));
        t.7.push(s(if i % 2 == 0 {
            "elementary school"
        } else {
            "high school"
        }));
    }
    Table::new()
        .string("id", t.0)
        .string("question", t.1)
        .string("image", t.2)
        .image("decoded_image", t.3)
        .string("ground_truth", t.4)
        .string("answer_type", t.5)
        .string("subject", t.6)
        .string("knowledge_level", t.7)
}

/// MMK12: single Image, letters for multiple choice (options in the question text) and
/// values otherwise, four subjects.
fn mmk12(problems: &[Problem], images: &[Vec<u8>]) -> Table {
    const SUBJECTS: [&str; 4] = ["math", "physics", "chemistry", "biology"];
    let mut t = (vec![], vec![], vec![], vec![], vec![]);
    for (i, p) in problems.iter().enumerate() {
        let multi_choice = i % 2 == 1;
        let (question, answer) = if multi_choice {
            let choices: Vec<String> =
                lettered(&p.options, |letter, text| format!("{letter}. {text}"));
            (
                format!("{}\n{}", p.question, choices.join("\n")),
                p.correct_letter(),
            )
        } else {
            (p.question.clone(), p.answer.clone())
        };
        t.0.push(s(format!("mmk12_synth_{i}")));
        t.1.push(s(SUBJECTS[i % SUBJECTS.len()]));
        t.2.push(Some(png(&images[i], format!("{i}.png"))));
        t.3.push(s(question));
        t.4.push(s(answer));
    }
    Table::new()
        .string("id", t.0)
        .string("subject", t.1)
        .image("image", t.2)
        .string("question", t.3)
        .string("answer", t.4)
}

/// Geometry3K: `images` list of one Image, "<image>" prefix, value `answer`, four
/// `choices` and the letter in `ground_truth`.
fn geo3k(problems: &[Problem], images: &[Vec<u8>]) -> Table {
    let mut t = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, p) in problems.iter().enumerate() {
        t.0.push(vec![png(&images[i], "img_diagram.png".into())]);
        t.1.push(s(format!("<image>{}", p.question)));
        t.2.push(s(p.answer.clone()));
        t.3.push(2100 + i as i64);
        t.4.push(p.options.clone());
        t.5.push(s(p.correct_letter()));
    }
    Table::new()
        .image_list("images", t.0)
        .string("problem", t.1)
        .string("answer", t.2)
        .int64("id", t.3)
        .string_list("choices", t.4)
        .string("ground_truth", t.5)
}

/// MathVision: "<image1>" placeholder, `options` list (sometimes only the bare letters, as
/// when the real options are drawn in the image), path string plus `decoded_image`.
fn mathvision(problems: &[Problem], images: &[Vec<u8>]) -> Table {
    let mut t = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (i, p) in problems.iter().enumerate() {
        let id = (i + 1).to_string();
        let path = format!("images/{id}.jpg");
        let (options, answer) = match i % 3 {
            0 => (p.options.clone(), p.correct_letter()),
            1 => (Vec::new(), p.answer.clone()),
            _ => (
                (0..p.options.len())
                    .map(|k| option_letter(k).to_string())
                    .collect(),
                p.correct_letter(),
            ),
        };
        let question = if i % 3 == 2 {
            // Options only in the image: state them in the text too so the item stays answerable.
            let listed: Vec<String> =
                lettered(&p.options, |letter, text| format!("({letter}) {text}"));
            format!("{}\n<image1>\n{}", p.question, listed.join(" "))
        } else {
            format!("{}\n<image1>", p.question)
        };
        t.0.push(s(id));
        t.1.push(s(question));
        t.2.push(options);
        t.3.push(s(path.clone()));
        t.4.push(Some(png(&images[i], path)));
        t.5.push(s(answer));
        t.6.push(None);
        t.7.push(1 + (i % 5) as i64);
        t.8.push(s(if p.topic.starts_with("geometry") {
            "metric geometry - length"
        } else {
            "arithmetic"
        }));
    }
    Table::new()
        .string("id", t.0)
        .string("question", t.1)
        .string_list("options", t.2)
        .string("image", t.3)
        .image("decoded_image", t.4)
        .string("answer", t.5)
        .string("solution", t.6)
        .int64("level", t.7)
        .string("subject", t.8)
}

/// We-Math: Image column named `image_path`, column names with spaces, options as one
/// ';'-joined string with letters and a trailing "E. No correct answer".
fn wemath(problems: &[Problem], images: &[Vec<u8>]) -> Table {
    let mut t = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (i, p) in problems.iter().enumerate() {
        let steps = if i % 3 == 0 { "3steps" } else { "2steps" };
        let mut parts: Vec<String> =
            lettered(&p.options, |letter, text| format!("{letter}. {text}"));
        parts.push("E. No correct answer".into());
        t.0.push(s(format!("{steps}_{}", i + 1)));
        t.1.push(s("testmini"));
        t.2.push(s(p.topic));
        t.3.push(s(p.question.clone()));
        t.4.push(s(parts.join(";")));
        t.5.push(s(p.correct_letter()));
        t.6.push(Some(png(&images[i], format!("{}-1.png", i + 1))));
        t.7.push(s(format!("{steps}_{}", i / 2 + 1)));
        t.8.push(i as i64 + 1);
        t.9.push(s(format!("{}: read the figure carefully.", p.topic)));
    }
    Table::new()
        .string("ID", t.0)
        .string("split", t.1)
        .string("knowledge concept", t.2)
        .string("question", t.3)
        .string("option", t.4)
        .string("answer", t.5)
        .image("image_path", t.6)
        .string("key", t.7)
        .int64("question number", t.8)
        .string("knowledge concept description", t.9)
}

/// LogicVista: options inside the question ("Select from A, B, C, and D. (A) ..."), list
/// columns for skills, and multi-answer ground truths like "B, D".
fn logicvista(problems: &[Problem], images: &[Vec<u8>], rng: &mut ChaCha20Rng) -> Table {
    const SKILLS: [&str; 5] = [
        "inductive",
        "numerical",
        "deductive",
        "spatial",
        "mechanical",
    ];
    let mut t = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (i, p) in problems.iter().enumerate() {
        let multi_answer = i % 4 == 3;
        let (question, answer) = if multi_answer {
            // Two true statements among four: the answer is both letters.
            let wrong = format!("{}0", p.answer.trim_start_matches('\\'));
            let statements = [
                format!("the answer is {}", p.answer),
                format!("the answer is {wrong}"),
                format!("the answer is not {wrong}"),
                "the figure is blank".to_string(),
            ];
            let mut order: Vec<usize> = (0..4).collect();
            for k in (1..4).rev() {
                order.swap(k, rng.random_range(0..=k));
            }
            let mut letters: Vec<char> = order
                .iter()
                .enumerate()
                .filter(|(_, s)| **s == 0 || **s == 2)
                .map(|(k, _)| option_letter(k))
                .collect();
            letters.sort();
            let listed: Vec<String> = order
                .iter()
                .enumerate()
                .map(|(k, s)| format!("({}) {}", option_letter(k), statements[*s]))
                .collect();
            (
                format!(
                    "{} Which statements are true? Select all that apply from A, B, C, and D. {}",
                    p.question,
                    listed.join("  ")
                ),
                letters
                    .iter()
                    .map(char::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        } else {
            let listed: Vec<String> =
                lettered(&p.options, |letter, text| format!("({letter}) {text}"));
            (
                format!(
                    " {} Select from A, B, C, and D. {}",
                    p.question,
                    listed.join("  ")
                ),
                p.correct_letter(),
            )
        };
        t.0.push(s(question));
        t.1.push(Some(png(&images[i], format!("synth_{i}.png"))));
        t.2.push(s(answer.clone()));
        t.3.push(s(format!(" The correct answer is {answer}. ")));
        t.4.push(vec![SKILLS[i % SKILLS.len()].to_string()]);
        t.5.push(vec!["diagram".to_string()]);
        t.6.push(vec![p.topic.to_string()]);
        t.7.push(s(format!("synth_{i}.png")));
        t.8.push(s("spotlight synth"));
    }
    Table::new()
        .string("question", t.0)
        .image("image", t.1)
        .string("answer", t.2)
        .string("reasoning", t.3)
        .string_list("skill", t.4)
        .string_list("broad_capability", t.5)
        .string_list("specific_capability", t.6)
        .string("imagename", t.7)
        .string("imagesource", t.8)
}

/// MMMU-Pro (standard, 10 options): `options` is a Python-repr string, `image_1`..`image_7`
/// with nulls (one row uses two images), "<image 1>" placeholders, a row whose image
/// bytes are null, answers A-J.
fn mmmu_pro(problems: &[Problem], images: &[Vec<u8>]) -> Table {
    let n = problems.len();
    let mut cols: Vec<Vec<Option<ImageCell>>> = vec![Vec::new(); 7];
    let mut t = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (i, p) in problems.iter().enumerate() {
        let id = format!("test_Math_{}", i + 1);
        // Ten options: the four of the problem and six more distractors.
        let mut options = p.options.clone();
        let extra = ["0", "100", "\\frac{7}{9}", "purple", "\\sqrt{7}", "31"];
        for e in extra {
            if options.len() == 10 {
                break;
            }
            if !options.iter().any(|o| o == e) {
                options.push(e.to_string());
            }
        }
        while options.len() < 10 {
            options.push(format!("{}", 900 + options.len()));
        }
        let two_images = i == 1;
        let null_bytes = i == n - 1;
        let question = if two_images {
            format!("{} <image 1> The same figure again: <image 2>", p.question)
        } else {
            format!("{} <image 1>", p.question)
        };
        for (k, col) in cols.iter_mut().enumerate() {
            col.push(match k {
                0 if null_bytes => Some(ImageCell {
                    bytes: None,
                    path: s(format!("{id}_1.png")),
                }),
                0 => Some(png(&images[i], format!("{id}_1.png"))),
                1 if two_images => Some(png(&images[i], format!("{id}_2.png"))),
                _ => None,
            });
        }
        let repr: Vec<String> = options
            .iter()
            .map(|o| format!("'{}'", o.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect();
        t.0.push(s(id));
        t.1.push(s(question));
        t.2.push(s(format!("[{}]", repr.join(", "))));
        t.3.push(s("?"));
        t.4.push(s("['Diagrams']"));
        t.5.push(s(p.correct_letter()));
        t.6.push(s(["Easy", "Medium", "Hard"][i % 3]));
        t.7.push(s("Math"));
    }
    let mut table = Table::new()
        .string("id", t.0)
        .string("question", t.1)
        .string("options", t.2)
        .string("explanation", t.3);
    for (k, col) in cols.into_iter().enumerate() {
        table = table.image(&format!("image_{}", k + 1), col);
    }
    table
        .string("img_type", t.4)
        .string("answer", t.5)
        .string("topic_difficulty", t.6)
        .string("subject", t.7)
}
