//! Worker and pipeline files (YAML, as `sluice validate` and `sluice run` read them) and flat
//! connector configs (JSON, as REST bodies carry them): any input gives a value or an error,
//! never a panic.

use serde_json::Value;

fn main() {
    let registry = sluice::registry::builtin();
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    let path = file.path().to_owned();
    let target = move |data: &[u8]| {
        let _keep = &file;
        // `${file:...}` reads whatever path it names (/dev/zero never ends): not parser input.
        if data.windows(6).any(|w| w == b"${file") {
            return;
        }
        std::fs::write(&path, data).expect("write input");
        if let Ok(files) = sluice::config::ConfigFile::load(&path) {
            for f in &files {
                let _ = f.check(&registry);
            }
        }
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) {
            let _ = sluice::config::pipeline_from_flat(
                "fuzz",
                &map,
                &registry,
                &sluice::config::ProviderPolicy::default(),
            );
            let _ = sluice::config::mask_flat(&map, &registry);
            let _ = sluice::config::flat_from_pipeline(&map);
        }
    };
    sluice_fuzz::main("config", target);
}
