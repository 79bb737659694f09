//! Simple drawn figures with questions whose answers are known by construction.
//!
//! Everything is composed here from a seeded RNG: coloured shapes to count, numbers drawn
//! as seven-segment digits to read and add, rectangles and right triangles with marked
//! sides, grids with shaded cells. No font is needed, so the generator runs anywhere.

use image::{Rgb, RgbImage};
use imageproc::drawing::{
    draw_filled_circle_mut, draw_filled_rect_mut, draw_hollow_rect_mut, draw_line_segment_mut,
    draw_polygon_mut,
};
use imageproc::point::Point;
use imageproc::rect::Rect;
use rand::seq::SliceRandom;
use rand::Rng;

/// A named colour used in figures and questions.
#[derive(Debug, Clone, Copy)]
pub struct NamedColor {
    pub name: &'static str,
    pub rgb: [u8; 3],
}

pub const COLORS: [NamedColor; 5] = [
    NamedColor {
        name: "red",
        rgb: [220, 40, 40],
    },
    NamedColor {
        name: "blue",
        rgb: [40, 80, 220],
    },
    NamedColor {
        name: "green",
        rgb: [30, 160, 60],
    },
    NamedColor {
        name: "orange",
        rgb: [240, 150, 20],
    },
    NamedColor {
        name: "purple",
        rgb: [140, 60, 180],
    },
];

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// The kinds of shapes drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeKind {
    Circle,
    Square,
    Triangle,
}

impl ShapeKind {
    pub fn plural(self) -> &'static str {
        match self {
            ShapeKind::Circle => "circles",
            ShapeKind::Square => "squares",
            ShapeKind::Triangle => "triangles",
        }
    }
}

/// A generated problem: the figure and what can be asked about it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub image: RgbImage,
    /// Question that needs the figure.
    pub question: String,
    /// The same question with everything needed stated in words (MathVerse "Text Only").
    pub question_text_only: String,
    /// Ground truth in the form mathruler grades ("12", "\\frac{1}{3}", "2\\sqrt{2}").
    pub answer: String,
    /// Four options (the answer among them) for multiple-choice renderings.
    pub options: Vec<String>,
    /// Index of the answer in `options`.
    pub correct: usize,
    /// Topic, for category fields.
    pub topic: &'static str,
    /// Numeric type of the answer ("int", "float", "text").
    pub answer_type: &'static str,
    /// A worked solution's reasoning: a few words that read the figure, then routine
    /// steps (the shape the paper observes in real chains of thought).
    pub reasoning: String,
}

impl Problem {
    pub fn correct_letter(&self) -> String {
        crate::bench::options::option_letter(self.correct).to_string()
    }
}

/// The problem kinds, cycled through by the benchmark writers.
pub const KINDS: usize = 6;

/// Problem number `kind` (mod [`KINDS`]) on a canvas of `size` pixels.
pub fn problem(kind: usize, size: u32, rng: &mut impl Rng) -> Problem {
    match kind % KINDS {
        0 => counting(size, rng),
        1 => sum_of_numbers(size, rng),
        2 => rectangle_area(size, rng),
        3 => hypotenuse(size, rng),
        4 => shaded_fraction(size, rng),
        _ => largest_colour(size, rng),
    }
}

fn canvas(size: u32) -> RgbImage {
    RgbImage::from_pixel(size, size, WHITE)
}

/// Options: the answer plus three distinct distractors, shuffled.
fn numeric_options(answer: i64, rng: &mut impl Rng) -> (Vec<String>, usize) {
    let mut values = vec![answer];
    while values.len() < 4 {
        let delta = rng.random_range(1..=4) * if rng.random_bool(0.5) { 1 } else { -1 };
        let candidate = (answer + delta).max(0);
        if !values.contains(&candidate) {
            values.push(candidate);
        }
    }
    values.shuffle(rng);
    let correct = values.iter().position(|v| *v == answer).unwrap_or(0);
    (values.iter().map(|v| v.to_string()).collect(), correct)
}

fn draw_shape(img: &mut RgbImage, kind: ShapeKind, cx: i32, cy: i32, r: i32, color: Rgb<u8>) {
    match kind {
        ShapeKind::Circle => draw_filled_circle_mut(img, (cx, cy), r, color),
        ShapeKind::Square => draw_filled_rect_mut(
            img,
            Rect::at(cx - r, cy - r).of_size((2 * r) as u32, (2 * r) as u32),
            color,
        ),
        ShapeKind::Triangle => draw_polygon_mut(
            img,
            &[
                Point::new(cx, cy - r),
                Point::new(cx + r, cy + r),
                Point::new(cx - r, cy + r),
            ],
            color,
        ),
    }
}

/// Free cells of a grid over the canvas, so shapes never overlap.
fn grid_cells(size: u32, cells_per_side: u32, rng: &mut impl Rng) -> Vec<(i32, i32, i32)> {
    let cell = size / cells_per_side;
    let mut cells: Vec<(i32, i32, i32)> = (0..cells_per_side * cells_per_side)
        .map(|i| {
            let (gx, gy) = (i % cells_per_side, i / cells_per_side);
            (
                (gx * cell + cell / 2) as i32,
                (gy * cell + cell / 2) as i32,
                (cell as i32 * 3) / 10,
            )
        })
        .collect();
    cells.shuffle(rng);
    cells
}

fn counting(size: u32, rng: &mut impl Rng) -> Problem {
    let mut img = canvas(size);
    let kinds = [ShapeKind::Circle, ShapeKind::Square, ShapeKind::Triangle];
    let target = kinds[rng.random_range(0..kinds.len())];
    let count = rng.random_range(2..=7);
    let others = rng.random_range(1..=5);
    let cells = grid_cells(size, 4, rng);
    let mut placed = 0;
    for (i, (cx, cy, r)) in cells.into_iter().enumerate().take(count + others) {
        let kind = if i < count {
            target
        } else {
            *kinds
                .iter()
                .filter(|k| **k != target)
                .nth(rng.random_range(0..2))
                .unwrap_or(&ShapeKind::Square)
        };
        let color = COLORS[rng.random_range(0..COLORS.len())].rgb;
        draw_shape(&mut img, kind, cx, cy, r, Rgb(color));
        placed += 1;
    }
    debug_assert!(placed >= count);
    let (options, correct) = numeric_options(count as i64, rng);
    Problem {
        image: img,
        question: format!("How many {} are there in the figure?", target.plural()),
        question_text_only: format!(
            "A figure shows {count} {} and {others} other shapes. How many {} are there in the figure?",
            target.plural(),
            target.plural()
        ),
        answer: count.to_string(),
        options,
        correct,
        topic: "counting",
        answer_type: "int",
        reasoning: format!("I count the {} in the figure one by one. There are {count} {}. So the number of {} is {count}.", target.plural(), target.plural(), target.plural()),
    }
}

/// Seven-segment digit strokes: a, b, c, d, e, f, g.
const SEGMENTS: [[bool; 7]; 10] = [
    [true, true, true, true, true, true, false],
    [false, true, true, false, false, false, false],
    [true, true, false, true, true, false, true],
    [true, true, true, true, false, false, true],
    [false, true, true, false, false, true, true],
    [true, false, true, true, false, true, true],
    [true, false, true, true, true, true, true],
    [true, true, true, false, false, false, false],
    [true, true, true, true, true, true, true],
    [true, true, true, true, false, true, true],
];

/// Draws `value` in seven-segment digits with its top-left corner at (x, y).
pub fn draw_number(img: &mut RgbImage, value: u64, x: i32, y: i32, height: i32, color: Rgb<u8>) {
    let w = height / 2;
    let t = (height / 10).max(1);
    let mut cx = x;
    for ch in value.to_string().chars() {
        let d = ch.to_digit(10).unwrap_or(0) as usize;
        let on = SEGMENTS[d];
        let h2 = height / 2;
        let bars: [(i32, i32, i32, i32); 7] = [
            (cx, y, w, t),               // a: top
            (cx + w - t, y, t, h2),      // b: upper right
            (cx + w - t, y + h2, t, h2), // c: lower right
            (cx, y + height - t, w, t),  // d: bottom
            (cx, y + h2, t, h2),         // e: lower left
            (cx, y, t, h2),              // f: upper left
            (cx, y + h2 - t / 2, w, t),  // g: middle
        ];
        for (seg, (bx, by, bw, bh)) in bars.iter().enumerate() {
            if on[seg] {
                draw_filled_rect_mut(
                    img,
                    Rect::at(*bx, *by).of_size((*bw).max(1) as u32, (*bh).max(1) as u32),
                    color,
                );
            }
        }
        cx += w + t * 2;
    }
}

fn sum_of_numbers(size: u32, rng: &mut impl Rng) -> Problem {
    let mut img = canvas(size);
    let a = rng.random_range(2..=49u64);
    let b = rng.random_range(2..=49u64);
    let h = (size / 4) as i32;
    draw_number(&mut img, a, (size / 10) as i32, (size / 8) as i32, h, INK);
    draw_number(
        &mut img,
        b,
        (size / 2) as i32,
        (size / 2) as i32,
        h,
        Rgb([40, 80, 220]),
    );
    let (options, correct) = numeric_options((a + b) as i64, rng);
    Problem {
        image: img,
        question: "What is the sum of the two numbers shown in the figure?".into(),
        question_text_only: format!("A figure shows the numbers {a} and {b}. What is the sum of the two numbers shown in the figure?"),
        answer: (a + b).to_string(),
        options,
        correct,
        topic: "arithmetic",
        answer_type: "int",
        reasoning: format!("The figure shows the numbers {a} and {b}. Adding them gives {a} + {b} = {}.", a + b),
    }
}

fn rectangle_area(size: u32, rng: &mut impl Rng) -> Problem {
    let mut img = canvas(size);
    let w = rng.random_range(2..=9u64);
    let h = rng.random_range(2..=9u64);
    let scale = (size as f32 * 0.6) / 9.0;
    let (rw, rh) = ((w as f32 * scale) as i32, (h as f32 * scale) as i32);
    let (x0, y0) = ((size as i32 - rw) / 2, (size as i32 - rh) / 2 + 4);
    for k in 0..2 {
        draw_hollow_rect_mut(
            &mut img,
            Rect::at(x0 + k, y0 + k)
                .of_size((rw - 2 * k).max(1) as u32, (rh - 2 * k).max(1) as u32),
            INK,
        );
    }
    let digit = (size / 10) as i32;
    draw_number(
        &mut img,
        w,
        x0 + rw / 2 - digit / 4,
        y0 - digit - 4,
        digit,
        Rgb([220, 40, 40]),
    );
    draw_number(
        &mut img,
        h,
        x0 + rw + 4,
        y0 + rh / 2 - digit / 2,
        digit,
        Rgb([220, 40, 40]),
    );
    let (options, correct) = numeric_options((w * h) as i64, rng);
    Problem {
        image: img,
        question: "The figure shows a rectangle with its side lengths marked. What is its area?"
            .into(),
        question_text_only: format!("A rectangle has side lengths {w} and {h}. What is its area?"),
        answer: (w * h).to_string(),
        options,
        correct,
        topic: "geometry: area",
        answer_type: "int",
        reasoning: format!("The marked side lengths are {w} and {h}. The area of a rectangle is width times height, so the area is {w} \\times {h} = {}.", w * h),
    }
}

fn hypotenuse(size: u32, rng: &mut impl Rng) -> Problem {
    // Legs and the exact hypotenuse in the form a grader must compare symbolically.
    const CASES: [(u64, u64, &str); 8] = [
        (3, 4, "5"),
        (6, 8, "10"),
        (5, 12, "13"),
        (1, 1, "\\sqrt{2}"),
        (1, 2, "\\sqrt{5}"),
        (2, 2, "2\\sqrt{2}"),
        (2, 3, "\\sqrt{13}"),
        (3, 3, "3\\sqrt{2}"),
    ];
    let (a, b, answer) = CASES[rng.random_range(0..CASES.len())];
    let mut img = canvas(size);
    let s = size as f32;
    let unit = s * 0.55 / a.max(b) as f32;
    let (x0, y0) = (s * 0.2, s * 0.8);
    let p1 = (x0, y0);
    let p2 = (x0 + b as f32 * unit, y0);
    let p3 = (x0, y0 - a as f32 * unit);
    for (from, to) in [(p1, p2), (p2, p3), (p3, p1)] {
        for k in 0..2 {
            let o = k as f32;
            draw_line_segment_mut(&mut img, (from.0 + o, from.1), (to.0 + o, to.1), INK);
        }
    }
    draw_hollow_rect_mut(
        &mut img,
        Rect::at(x0 as i32, (y0 - 8.0) as i32).of_size(8, 8),
        INK,
    );
    let digit = (size / 10) as i32;
    draw_number(
        &mut img,
        b,
        ((p1.0 + p2.0) / 2.0) as i32,
        (y0 + 4.0) as i32,
        digit,
        Rgb([40, 80, 220]),
    );
    draw_number(
        &mut img,
        a,
        (x0 - digit as f32) as i32 - 4,
        ((p1.1 + p3.1) / 2.0) as i32,
        digit,
        Rgb([40, 80, 220]),
    );
    let distractors = ["4", "6", "\\sqrt{3}", "2\\sqrt{3}", "7", "\\sqrt{10}", "12"];
    let mut options = vec![answer.to_string()];
    for d in distractors.iter().copied().filter(|d| *d != answer) {
        if options.len() == 4 {
            break;
        }
        if rng.random_bool(0.6) {
            options.push(d.to_string());
        }
    }
    while options.len() < 4 {
        let d = distractors[options.len()];
        if !options.iter().any(|o| o == d) && d != answer {
            options.push(d.to_string());
        } else {
            options.push(format!("{}", 20 + options.len()));
        }
    }
    options.shuffle(rng);
    let correct = options.iter().position(|o| o == answer).unwrap_or(0);
    Problem {
        image: img,
        question: "The figure shows a right triangle with the lengths of its two legs marked. Find the length of the hypotenuse.".into(),
        question_text_only: format!("A right triangle has legs of length {a} and {b}. Find the length of the hypotenuse."),
        answer: answer.to_string(),
        options,
        correct,
        topic: "geometry: length",
        reasoning: format!("The legs are marked {a} and {b}. By the Pythagorean theorem the hypotenuse is \\sqrt{{{a}^2 + {b}^2}} = \\sqrt{{{}}} = {answer}.", a * a + b * b),
        answer_type: if answer.contains('\\') { "text" } else { "int" },
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn shaded_fraction(size: u32, rng: &mut impl Rng) -> Problem {
    let (cols, rows) = [(3u32, 2u32), (4, 2), (4, 3), (3, 3), (5, 2)][rng.random_range(0..5)];
    let total = (cols * rows) as u64;
    let shaded = rng.random_range(1..total);
    let mut img = canvas(size);
    let cell = (size * 8 / 10) / cols.max(rows);
    let (x0, y0) = (
        ((size - cell * cols) / 2) as i32,
        ((size - cell * rows) / 2) as i32,
    );
    let mut order: Vec<u64> = (0..total).collect();
    order.shuffle(rng);
    let shaded_cells: Vec<u64> = order.into_iter().take(shaded as usize).collect();
    for i in 0..total {
        let (gx, gy) = ((i as u32 % cols) as i32, (i as u32 / cols) as i32);
        let rect = Rect::at(x0 + gx * cell as i32, y0 + gy * cell as i32).of_size(cell, cell);
        if shaded_cells.contains(&i) {
            draw_filled_rect_mut(&mut img, rect, Rgb([30, 160, 60]));
        }
        draw_hollow_rect_mut(&mut img, rect, INK);
    }
    let g = gcd(shaded, total);
    let (n, d) = (shaded / g, total / g);
    let answer = if d == 1 {
        n.to_string()
    } else {
        format!("\\frac{{{n}}}{{{d}}}")
    };
    let mut options = vec![answer.clone()];
    for (dn, dd) in [
        (1, 2),
        (1, 3),
        (2, 3),
        (1, 4),
        (3, 4),
        (2, 5),
        (1, 6),
        (5, 6),
    ] {
        if options.len() == 4 {
            break;
        }
        let candidate = format!("\\frac{{{dn}}}{{{dd}}}");
        if candidate != answer && rng.random_bool(0.7) {
            options.push(candidate);
        }
    }
    while options.len() < 4 {
        options.push(format!(
            "\\frac{{{}}}{{{}}}",
            options.len() + 6,
            options.len() + 7
        ));
    }
    options.shuffle(rng);
    let correct = options.iter().position(|o| *o == answer).unwrap_or(0);
    Problem {
        image: img,
        question: "What fraction of the squares in the figure are shaded? Give the fraction in lowest terms.".into(),
        question_text_only: format!("A grid has {total} equal squares, {shaded} of which are shaded. What fraction of the squares are shaded? Give the fraction in lowest terms."),
        answer: answer.clone(),
        options,
        correct,
        topic: "fractions",
        answer_type: "text",
        reasoning: format!("The grid has {total} squares and {shaded} of them are shaded. The fraction is \\frac{{{shaded}}}{{{total}}}, which in lowest terms is {}.", answer),
    }
}

fn largest_colour(size: u32, rng: &mut impl Rng) -> Problem {
    let mut img = canvas(size);
    let mut colors = COLORS.to_vec();
    colors.shuffle(rng);
    let chosen = &colors[..4];
    let cells = grid_cells(size, 2, rng);
    let radii = [0.42f32, 0.30, 0.22, 0.16];
    let cell = (size / 2) as f32;
    for (i, ((cx, cy, _), color)) in cells.iter().zip(chosen).enumerate() {
        draw_filled_circle_mut(
            &mut img,
            (*cx, *cy),
            (cell * radii[i]) as i32,
            Rgb(color.rgb),
        );
    }
    let answer = chosen[0].name.to_string();
    let mut options: Vec<String> = chosen.iter().map(|c| c.name.to_string()).collect();
    options.shuffle(rng);
    let correct = options.iter().position(|o| *o == answer).unwrap_or(0);
    Problem {
        image: img,
        question: "What is the colour of the largest circle in the figure?".into(),
        question_text_only: format!(
            "A figure shows four circles coloured {}; the {} one is the largest. What is the colour of the largest circle in the figure?",
            options.join(", "),
            answer
        ),
        answer: answer.clone(),
        options,
        correct,
        topic: "colour",
        answer_type: "text",
        reasoning: format!("I compare the sizes of the four circles. The largest circle is {answer}. So the colour of the largest circle is {answer}."),
    }
}

/// PNG bytes of an image.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_kind_has_its_answer_among_the_options() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for kind in 0..KINDS * 5 {
            let p = problem(kind, 112, &mut rng);
            assert_eq!(p.options.len(), 4, "{p:?}");
            assert_eq!(p.options[p.correct], p.answer);
            let mut unique = p.options.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 4, "options must be distinct: {:?}", p.options);
        }
    }

    #[test]
    fn same_seed_same_figure() {
        let a = problem(2, 96, &mut rand_chacha::ChaCha20Rng::seed_from_u64(9));
        let b = problem(2, 96, &mut rand_chacha::ChaCha20Rng::seed_from_u64(9));
        assert_eq!(a.image.as_raw(), b.image.as_raw());
        assert_eq!(a.answer, b.answer);
    }

    #[test]
    fn shaded_fraction_is_in_lowest_terms() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        for _ in 0..50 {
            let p = shaded_fraction(96, &mut rng);
            if let Some(rest) = p.answer.strip_prefix("\\frac{") {
                let parts: Vec<u64> = rest
                    .trim_end_matches('}')
                    .split("}{")
                    .map(|x| x.parse().unwrap())
                    .collect();
                assert_eq!(gcd(parts[0], parts[1]), 1, "{}", p.answer);
            }
        }
    }
}
