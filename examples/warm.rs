fn main() {
    let mut d = portwarden::discover::Discoverer::new(portwarden::discover::Options {
        proc_root: "/proc".into(),
        exclusions: portwarden::exclude::Exclusions::none(),
        threads: 0,
    })
    .expect("open");
    d.discover_full().expect("full");
    let mut v = vec![];
    let t0 = std::time::Instant::now();
    let cpu = || {
        let s = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let f: Vec<f64> = s
            .rsplit(')')
            .next()
            .expect("f")
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        (f[11] * 10.0, f[12] * 10.0)
    };
    let r0 = cpu();
    for _ in 0..100 {
        let t = std::time::Instant::now();
        let r = d.refresh().expect("refresh");
        v.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(r);
    }
    let r1 = cpu();
    v.sort_by(|a, b| a.partial_cmp(b).expect("num"));
    eprintln!(
        "min {:.1} p50 {:.1} p90 {:.1} max {:.1} | per iter user {:.1} sys {:.1} wall {:.1}",
        v[0],
        v[50],
        v[90],
        v[99],
        (r1.0 - r0.0) / 100.0,
        (r1.1 - r0.1) / 100.0,
        t0.elapsed().as_secs_f64() * 10.0
    );
}
