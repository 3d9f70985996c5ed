//! The official code's random streams against CPython and NumPy themselves: the class orders
//! PROTOCOL.md prints, and every draw of `tests/fixtures/official_rng.json`
//! (`tools/make_rng_fixture.py`: shuffles, samples by pool and by set, choices, `random()` for
//! seeds up to 2⁶⁴ + 17 and negative ones).

use gs_lora_train::engine::{TaskSchedule, schedule_samples, task_samples};
use gs_lora_train::protocol::{ClassOrder, NumpyRandomState, PythonRandom};
use gs_lora_train::{ForgetConfig, Replay};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/official_rng.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn numbers(value: &Value) -> Vec<usize> {
    let list = value.as_array().expect("a list");
    list.iter()
        .map(|v| v.as_u64().expect("a whole number") as usize)
        .collect()
}

/// PROTOCOL.md §0.2 (faces, `random.seed(1337)`) and §2 (COCO, `np.random.seed(123)` on the 80
/// category ids), as printed there from CPython 3.11 and NumPy.
#[test]
fn the_official_class_orders_are_reproduced() {
    let faces = "83 17 10 9 89 52 7 32 37 77 61 34 78 55 56 63 69 22 75 66 35 72 71 23 86 38 24 5 \
                 29 30 16 11 82 19 57 14 91 27 98 53 0 20 59 28 47 18 6 48 12 62 1 43 3 60 41 85 \
                 4 95 97 36 94 65 67 99 25 33 70 40 92 31 58 15 45 2 87 76 80 44 64 8 51 54 13 88 \
                 84 26 50 39 96 81 49 42 21 93 74 73 46 90 68 79";
    let coco = "74 64 65 5 79 59 36 88 9 49 10 42 86 34 82 90 72 89 50 25 2 27 75 51 67 22 16 85 \
                18 31 21 80 7 73 57 17 81 20 15 24 11 56 13 1 6 48 4 46 14 60 39 32 35 23 38 43 \
                58 33 40 47 8 54 70 62 87 44 3 77 61 55 78 41 28 52 37 84 53 63 19 76";
    let parse = |s: &str| -> Vec<usize> {
        s.split_whitespace()
            .map(|n| n.parse().expect("n"))
            .collect()
    };
    let mut order: Vec<usize> = (0..100).collect();
    PythonRandom::new(1337)
        .shuffle(&mut order)
        .expect("shuffle");
    assert_eq!(order, parse(faces));
    let mut ids = numbers(&fixture()["coco_ids"]);
    NumpyRandomState::new(123)
        .shuffle(&mut ids)
        .expect("shuffle");
    assert_eq!(ids, parse(coco));
}

/// Every CPython draw of the fixture: `random()` to the last bit, shuffles of 1 to 1000 items,
/// `sample` on both of CPython's paths (pool for small populations, a set of picks for large
/// ones, and the boundary between), `choices`. Catches a seed split into words the wrong way,
/// `getrandbits` taking the low bits, `_randbelow` drawing one bit too many, the two `sample`
/// paths swapped or switched at the wrong size.
#[test]
fn python_random_matches_cpython() {
    let fixture = fixture();
    for case in fixture["python"].as_array().expect("cases") {
        let seed: i128 = case["seed"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("a seed written as text");
        let mut rng = PythonRandom::new(seed);
        for expected in case["random"].as_array().expect("random") {
            assert_eq!(rng.random(), expected.as_f64().expect("f64"), "seed {seed}");
        }
        for (n, expected) in case["shuffle"].as_object().expect("shuffles") {
            let mut items: Vec<usize> = (0..n.parse().expect("n")).collect();
            PythonRandom::new(seed)
                .shuffle(&mut items)
                .expect("shuffle");
            assert_eq!(items, numbers(expected), "seed {seed}, shuffle of {n}");
        }
        for draw in case["sample"].as_array().expect("samples") {
            let (n, k) = (
                draw["n"].as_u64().expect("n"),
                draw["k"].as_u64().expect("k"),
            );
            let population: Vec<usize> = (0..n as usize).collect();
            let picked = PythonRandom::new(seed)
                .sample(&population, k as usize)
                .expect("sample");
            assert_eq!(
                picked,
                numbers(&draw["picked"]),
                "seed {seed}, sample({n}, {k})"
            );
        }
        let population: Vec<usize> = (0..7).collect();
        let chosen = PythonRandom::new(seed).choices(&population, 20);
        assert_eq!(chosen, numbers(&case["choices"]), "seed {seed}, choices");
    }
    let err = PythonRandom::new(0)
        .sample(&[1, 2, 3], 4)
        .expect_err("k > n");
    assert!(
        err.to_string()
            .contains("cannot sample 4 items from a population of 3"),
        "{err}"
    );
}

/// Every NumPy shuffle of the fixture, including seed 2³² − 1. Catches `init_by_array` used
/// instead of `init_genrand`, a mask one bit too wide or narrow, `j` drawn in `[0, i)`.
#[test]
fn numpy_random_state_matches_numpy() {
    let fixture = fixture();
    for case in fixture["numpy"].as_array().expect("cases") {
        let seed = u32::try_from(case["seed"].as_u64().expect("seed")).expect("32-bit seed");
        for (n, expected) in case["shuffle"].as_object().expect("shuffles") {
            let mut items: Vec<usize> = (0..n.parse().expect("n")).collect();
            NumpyRandomState::new(seed)
                .shuffle(&mut items)
                .expect("shuffle");
            assert_eq!(items, numbers(expected), "seed {seed}, shuffle of {n}");
        }
        let mut ids = numbers(&fixture["coco_ids"]);
        NumpyRandomState::new(seed)
            .shuffle(&mut ids)
            .expect("shuffle");
        assert_eq!(ids, numbers(&case["coco_ids"]), "seed {seed}, COCO ids");
    }
}

/// The official few-shot subsets (`tools/make_rng_fixture.py`, `few_shot`): with the Python
/// class order, every task's forget and remaining picks continue CPython's stream as the
/// official code draws them. Catches the stream restarted per task, the remaining classes drawn
/// before the forget ones, classes taken in the order's order instead of ascending labels, and
/// the group shuffle left out (each shifts every later pick), and a forget fraction that skips
/// the stream's forget picks. Other orders keep the per-task draw.
#[test]
fn the_official_few_shot_draw_is_reproduced() {
    let fixture = fixture();
    let case = &fixture["few_shot"];
    let count = |key: &str| case[key].as_u64().expect(key) as usize;
    let (classes, per_task, tasks, k) = (
        count("classes"),
        count("forget_per_task"),
        count("tasks"),
        count("k"),
    );
    let config = ForgetConfig {
        class_order: ClassOrder::Python(1337),
        replay: Replay::FewShot(k),
        forget_fraction: None,
        tasks,
        forget_per_task: per_task,
        ..ForgetConfig::default()
    };
    let order = config.class_order.order(classes, 0).expect("order");
    assert_eq!(order, numbers(&case["order"]));
    let schedule = TaskSchedule::from_order(order, tasks, per_task).expect("schedule");
    let samples_of = |c: usize| (0..4 + c % 3).map(|j| 100 * c + j).collect::<Vec<_>>();
    let found = schedule_samples(samples_of, &schedule.tasks, classes, &config).expect("draw");
    let expected = case["samples"].as_array().expect("tasks");
    assert_eq!(found.len(), expected.len());
    for (t, (found, expected)) in found.iter().zip(expected).enumerate() {
        assert_eq!(
            found.forget,
            numbers(&expected["forget"]),
            "task {t} forget"
        );
        assert_eq!(
            found.retain,
            numbers(&expected["retain"]),
            "task {t} remaining"
        );
    }
    // A forget fraction replaces the forget picks alone: the stream still draws them, so the
    // remaining picks stay the official ones.
    let whole_forget = ForgetConfig {
        forget_fraction: Some(1.0),
        ..config.clone()
    };
    let with_fraction =
        schedule_samples(samples_of, &schedule.tasks, classes, &whole_forget).expect("draw");
    for ((found, task), expected) in with_fraction.iter().zip(&schedule.tasks).zip(expected) {
        assert_eq!(found.retain, numbers(&expected["retain"]));
        let mut every: Vec<usize> = task.forget.iter().flat_map(|&c| samples_of(c)).collect();
        every.sort_unstable();
        assert_eq!(found.forget, every);
    }
    let seeded = ForgetConfig {
        class_order: ClassOrder::Seeded,
        ..config
    };
    let per_task_draw: Vec<_> = schedule
        .tasks
        .iter()
        .map(|task| task_samples(samples_of, task, &seeded).expect("draw"))
        .collect();
    assert_eq!(
        schedule_samples(samples_of, &schedule.tasks, classes, &seeded).expect("draw"),
        per_task_draw
    );
}
