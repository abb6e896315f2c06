//! Unit tests of the readers: columns by name, key modes, file:line errors, quoting,
//! windows, chunk boundaries, timestamps.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    p
}

fn opts() -> OrdersOptions {
    OrdersOptions {
        basket_by: BasketBy::Customer,
        need_time: false,
    }
}

#[test]
fn columns_are_found_by_name_in_any_order() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "o.csv",
        "customer_id,qty,book_id\n7,1,30\n7,2,10\n9,1,30\n",
    );
    let r = read_orders(&p, opts()).unwrap();
    assert_eq!(r.item_keys, Keys::Int(vec![10, 30]));
    assert_eq!(r.n_baskets, 2);
    assert_eq!(r.item.concat(), vec![1, 0, 1]);
    assert_eq!(r.basket.concat(), vec![0, 0, 1]);
}

#[test]
fn string_keys_fall_back_and_sort_bytewise() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "o.csv", "book_id,customer_id\n10,a\nb,a\n9,c\n");
    let r = read_orders(&p, opts()).unwrap();
    assert_eq!(
        r.item_keys,
        Keys::Str(vec!["10".into(), "9".into(), "b".into()])
    );
    assert_eq!(r.item.concat(), vec![0, 2, 1]);
}

#[test]
fn bad_rows_name_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "orders.csv",
        "id,book_id,qty,created_at,customer_id\n1,5,1,2024-01-01T00:00:00Z,1\n2,6,x,2024-01-01T00:00:00Z,1\n",
    );
    let e = read_orders(&p, opts()).unwrap_err().to_string();
    assert!(e.contains("orders.csv:3:") && e.contains("qty"), "{e}");
    let p = write(d.path(), "short.csv", "book_id,customer_id\n1,2\n3\n");
    let e = read_orders(&p, opts()).unwrap_err().to_string();
    assert!(
        e.contains("short.csv:3:") && e.contains("expected 2 fields"),
        "{e}"
    );
    let p = write(d.path(), "nocust.csv", "book_id,qty\n1,2\n");
    let e = read_orders(&p, opts()).unwrap_err().to_string();
    assert!(
        e.contains("nocust.csv:1:") && e.contains("--basket-window"),
        "{e}"
    );
    let p = write(
        d.path(),
        "t.csv",
        "book_id,customer_id,created_at\n1,2,yesterday\n",
    );
    let e = read_orders(
        &p,
        OrdersOptions {
            basket_by: BasketBy::Customer,
            need_time: true,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("t.csv:2:") && e.contains("yesterday"), "{e}");
}

#[test]
fn quoted_fields_and_windows() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "o.csv",
        "book_id,created_at\n\"1\",2024-01-01 10:00:00\n2,2024-01-01T10:59:59Z\n3,2024-01-01 11:00:00+00\n",
    );
    let r = read_orders(
        &p,
        OrdersOptions {
            basket_by: BasketBy::Window(3_600_000_000),
            need_time: false,
        },
    )
    .unwrap();
    assert_eq!(r.n_baskets, 2);
    assert_eq!(r.basket.concat(), vec![0, 0, 1]);
}

#[test]
fn baskets_format_comma_and_space() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "g.csv", "whole milk,yogurt \n\nbeer\n");
    let r = read_baskets(&p, KeyKind::Auto, false).unwrap();
    assert_eq!(r.n_baskets, 2);
    assert_eq!(
        r.item_keys,
        Keys::Str(vec!["beer".into(), "whole milk".into(), "yogurt".into()])
    );
    let p = write(d.path(), "f.dat", "3 1 2\n2 2\n");
    let r = read_baskets(&p, KeyKind::Auto, false).unwrap();
    assert_eq!(r.item_keys, Keys::Int(vec![1, 2, 3]));
    assert_eq!(r.item.concat(), vec![2, 0, 1, 1, 1]);
    let p = write(d.path(), "bad.csv", "a,b\nc,,d\n");
    let e = read_baskets(&p, KeyKind::Auto, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.csv:2:"), "{e}");
}

#[test]
fn crlf_lines_and_many_chunks_keep_exact_line_numbers() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "crlf.csv",
        "book_id,customer_id\r\n5,1\r\n6,1\r\n",
    );
    let r = read_orders(&p, opts()).unwrap();
    assert_eq!(r.item_keys, Keys::Int(vec![5, 6]));
    assert_eq!(r.basket.concat(), vec![0, 0]);

    // ~6 MB: several 1 MiB+ chunks read in parallel; break line 150,001.
    let mut body = String::from("id,book_id,qty,created_at,customer_id\n");
    for i in 0..200_000u32 {
        if i == 150_000 {
            body.push_str("x,1,1,2024-01-01T00:00:00Z\n");
        } else {
            body.push_str(&format!(
                "{i},{},1,2024-01-01T00:00:00Z,{}\n",
                i % 97,
                i % 1013
            ));
        }
    }
    let p = write(d.path(), "big.csv", &body);
    let e = read_orders(&p, opts()).unwrap_err().to_string();
    assert!(e.contains("big.csv:150002:"), "{e}");
    let fixed = body.replace(
        "x,1,1,2024-01-01T00:00:00Z\n",
        "x,1,1,2024-01-01T00:00:00Z,7\n",
    );
    std::fs::write(&p, fixed).unwrap();
    let r = read_orders(&p, opts()).unwrap();
    assert_eq!(r.n_rows, 200_000);
    assert!(r.basket.len() > 1, "expected several chunks");
    assert_eq!(r.item_keys.len(), 97);
    assert_eq!(r.n_baskets, 1013);
}

#[test]
fn parses_timestamps() {
    assert_eq!(parse_time(b"1970-01-01T00:00:01Z"), Some(1_000_000));
    assert_eq!(
        parse_time(b"1970-01-01 00:00:01+01"),
        Some(1_000_000 - 3_600_000_000)
    );
    assert_eq!(parse_time(b"1970-01-01 00:00:01.5"), Some(1_500_000));
    assert_eq!(parse_time(b"soon"), None);
}

#[test]
fn tab_semicolon_and_pipe_separated_orders_read_like_csv() {
    let d = tempfile::tempdir().unwrap();
    let rows = [
        ["customer_id", "book_id", "created_at"],
        ["7", "30", "2024-01-01 10:00:00"],
        ["7", "10", "2024-01-01 10:00:00"],
        ["9", "\"3;0|x\"", "2024-01-02 10:00:00"],
        ["9", "10", "2024-01-02 10:00:00"],
    ];
    let read = |name: &str, sep: &str| {
        let body: String = rows.iter().map(|r| r.join(sep) + "\n").collect();
        let r = read_orders(&write(d.path(), name, &body), opts()).unwrap();
        (r.item_keys, r.item.concat(), r.basket.concat())
    };
    let csv = read("o.csv", ",");
    assert_eq!(
        csv.0,
        Keys::Str(vec!["10".into(), "30".into(), "3;0|x".into()])
    );
    assert_eq!(read("o.tsv", "\t"), csv);
    assert_eq!(read("o.ssv", ";"), csv);
    assert_eq!(read("o.psv", "|"), csv);

    // No book_id under any separator: the message says which separators were tried.
    let p = write(d.path(), "odd.txt", "customer_id:book_id\n1:2\n");
    let e = read_orders(&p, opts()).unwrap_err().to_string();
    assert!(
        e.contains("odd.txt:1:")
            && e.contains("no book_id column")
            && e.contains("commas, tabs, semicolons or pipes"),
        "{e}"
    );
}

proptest::proptest! {
    /// The in-place reading of `YYYY-MM-DDTHH:MM:SS[Z]` agrees with chrono's general
    /// parsers on every such string, valid or not (month 13, 31 April, 29 February of a
    /// common year, hour 24, second 60).
    #[test]
    fn plain_timestamps_parse_as_the_general_parsers_do(
        y in 1900u32..2200, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..61,
        s in 0u32..62, sep in proptest::sample::select(vec!['T', ' ']), z: bool,
    ) {
        let text = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{}", if z { "Z" } else { "" });
        let general = super::csv::parse_time_general(text.as_bytes());
        proptest::prop_assert_eq!(parse_time(text.as_bytes()), general, "{}", text);
    }
}
