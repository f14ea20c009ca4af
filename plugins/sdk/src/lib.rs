//! Write Sluice plugins in Rust. A plugin is a WebAssembly component (`wasm32-wasip2`)
//! implementing one world of `sluice:connector@0.2.0`; enable the matching feature
//! (`transform`, `source` or `sink`), implement the trait and export it:
//!
//! ```ignore
//! use sluice_plugin_sdk::transform::{Config, Error, Record, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn open(_config: &Config) -> Result<Self, Error> {
//!         Ok(Upper)
//!     }
//!     fn apply(&mut self, mut record: Record) -> Result<Option<Record>, Error> {
//!         record.topic = record.topic.to_uppercase();
//!         Ok(Some(record))
//!     }
//! }
//!
//! sluice_plugin_sdk::export_transform!(Upper);
//! ```
//!
//! Keys and values arrive as schemaless JSON bytes ([`Record::value_json`] parses them); config
//! arrives as strings (everything that is not a string as JSON text), read with [`Config`].

extern crate self as sluice_plugin_sdk;

#[doc(hidden)]
pub use serde_json as __json;
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

mod config;
mod fields;
#[cfg_attr(
    not(any(feature = "transform", feature = "source", feature = "sink")),
    allow(dead_code)
)]
mod record;
pub use config::Config;
pub use record::{Header, Record};

/// The helpers every world shares, on that world's generated types.
macro_rules! common {
    ($bindings:ident) => {
        pub use $bindings::sluice::connector::host::{committed_offset, now_millis};
        pub use $bindings::sluice::connector::types::{ConfigField, Error, Level};
        pub use $crate::{Config, Header, Record};

        /// Logs through the worker's tracing, tagged with plugin, connector and task.
        pub fn log(level: Level, message: &str) {
            $bindings::sluice::connector::host::log(level, message)
        }

        #[doc(hidden)]
        pub mod __packed {
            use super::$bindings::sluice::connector::types as wit;
            use $crate::Record;

            /// The records of a batch the host sent.
            #[allow(dead_code)]
            pub fn unpack(batch: wit::Batch) -> Vec<Record> {
                $crate::record::records(&batch.data, &batch.records, &batch.headers).collect()
            }

            pub fn wit(packed: $crate::record::Packed) -> wit::Batch {
                wit::Batch {
                    data: packed.data,
                    records: packed.records,
                    headers: packed.headers,
                }
            }

            /// Records packed into a batch for the host (their buffers go back to the pool).
            #[allow(dead_code)]
            pub fn pack(records: Vec<Record>) -> wit::Batch {
                packed(records.into_iter().map(Some), 0)
            }

            /// A transform's results packed for the host (`None`: dropped).
            #[allow(dead_code)]
            pub fn pack_results(results: Vec<Option<Record>>, bytes_hint: usize) -> wit::Batch {
                packed(results.into_iter(), bytes_hint)
            }

            fn packed(
                records: impl ExactSizeIterator<Item = Option<Record>>,
                bytes_hint: usize,
            ) -> wit::Batch {
                let mut p = $crate::record::Packer::new(records.len(), bytes_hint);
                for r in records {
                    p.push(r);
                }
                wit(p.finish())
            }
        }

        impl ConfigField {
            /// An optional field without default; `kind` is one of `string`, `int`, `float`,
            /// `bool`, `duration`, `list`.
            pub fn new(name: &str, kind: &str, doc: &str) -> Self {
                Self {
                    name: name.to_owned(),
                    kind: kind.to_owned(),
                    required: false,
                    default: None,
                    secret: false,
                    doc: doc.to_owned(),
                }
            }

            /// The field must be given.
            pub fn required(mut self) -> Self {
                self.required = true;
                self
            }

            /// The default, as JSON text (`5`, `"x"`, `["a"]`).
            pub fn default(mut self, json: &str) -> Self {
                self.default = Some(json.to_owned());
                self
            }

            /// The value is never shown (REST, logs, validation output).
            pub fn secret(mut self) -> Self {
                self.secret = true;
                self
            }
        }

        impl Error {
            /// A configuration error naming the field.
            pub fn config(field: &str, message: impl std::fmt::Display) -> Self {
                Error::Config(format!("{field}: {message}"))
            }
        }
    };
}

/// Transform plugins: implement [`transform::Transform`] and use [`export_transform!`].
#[cfg(feature = "transform")]
pub mod transform {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "transform",
            pub_export_macro: true,
            export_macro_name: "__export_transform_world",
            default_bindings_module: "sluice_plugin_sdk::transform::bindings",
            runtime_path: "sluice_plugin_sdk::__wit_bindgen::rt",
        });
    }
    common!(bindings);

    /// A single message transform.
    pub trait Transform: Sized + 'static {
        /// The config fields this transform accepts (validated by the host before `open`).
        fn spec() -> Vec<ConfigField> {
            Vec::new()
        }

        /// Called once per instance with the validated config.
        fn open(config: &Config) -> Result<Self, Error>;

        /// The transformed record, or `None` to drop it.
        fn apply(&mut self, record: Record) -> Result<Option<Record>, Error>;

        /// A batch; the default applies [`Self::apply`] to each record.
        fn apply_batch(&mut self, batch: Vec<Record>) -> Result<Vec<Option<Record>>, Error> {
            batch.into_iter().map(|r| self.apply(r)).collect()
        }
    }

    std::thread_local! {
        static STATE: std::cell::RefCell<Option<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(None) };
    }

    #[doc(hidden)]
    pub fn __open<T: Transform>(config: Vec<(String, String)>) -> Result<(), Error> {
        let t = T::open(&Config::new(config))?;
        STATE.with(|s| *s.borrow_mut() = Some(Box::new(t)));
        Ok(())
    }

    #[doc(hidden)]
    pub fn __apply<T: Transform>(
        batch: bindings::sluice::connector::types::Batch,
    ) -> Result<bindings::sluice::connector::types::Batch, Error> {
        let bytes = batch.data.len();
        let records = __packed::unpack(batch);
        STATE.with(|s| {
            let mut state = s.borrow_mut();
            let t = state
                .as_mut()
                .and_then(|b| b.downcast_mut::<T>())
                .ok_or_else(|| Error::Fatal("apply called before open".to_owned()))?;
            let results = t.apply_batch(records)?;
            Ok(__packed::pack_results(results, bytes))
        })
    }

    /// Exports a [`Transform`] implementation as the plugin's `transformer`.
    #[macro_export]
    macro_rules! export_transform {
        ($t:ty) => {
            #[doc(hidden)]
            struct __SluiceTransform;
            impl $crate::transform::bindings::exports::sluice::connector::transformer::Guest
                for __SluiceTransform
            {
                fn spec() -> Vec<$crate::transform::ConfigField> {
                    <$t as $crate::transform::Transform>::spec()
                }
                fn open(
                    config: Vec<(String, String)>,
                ) -> Result<(), $crate::transform::Error> {
                    $crate::transform::__open::<$t>(config)
                }
                fn apply(
                    batch: $crate::transform::bindings::sluice::connector::types::Batch,
                ) -> Result<
                    $crate::transform::bindings::sluice::connector::types::Batch,
                    $crate::transform::Error,
                > {
                    $crate::transform::__apply::<$t>(batch)
                }
            }
            $crate::transform::bindings::__export_transform_world!(
                __SluiceTransform with_types_in $crate::transform::bindings
            );
        };
    }

    #[cfg(test)]
    mod tests {
        use super::{__packed, Header, Record};

        #[test]
        fn records_survive_packing_and_unpacking() {
            let records = vec![
                Record {
                    topic: "t".into(),
                    partition: Some(2),
                    offset: Some(7),
                    key: Some(b"k".to_vec()),
                    value: Some(br#"{"a":1}"#.to_vec()),
                    headers: vec![
                        Header {
                            key: "h".into(),
                            value: Some(b"v".to_vec()),
                        },
                        Header {
                            key: "none".into(),
                            value: None,
                        },
                    ],
                    timestamp: Some(1000),
                    source_partition: Some(r#"{"p":1}"#.into()),
                    source_offset: Some(r#"{"o":2}"#.into()),
                },
                Record::new("t", None),
                Record {
                    value: Some(Vec::new()),
                    ..Record::new("u", None)
                },
            ];
            let batch = __packed::pack(records.clone());
            // Records of one topic share its bytes.
            assert_eq!(batch.records[0], batch.records[15]);
            assert_eq!(batch.records.len(), 3 * 15);
            assert_eq!(batch.headers.len(), 2 * 4);
            assert_eq!(__packed::unpack(batch), records);
            let results = __packed::pack_results(vec![None, Some(records[0].clone())], 0);
            // A dropped record has a topic length of -1.
            assert_eq!(results.records[1], -1);
            assert_eq!(results.records[15 + 9], 2, "header count");
            assert_eq!(__packed::unpack(results)[1], records[0]);
        }
    }
}

/// Source plugins: implement [`source::Source`] and use [`export_source!`].
#[cfg(feature = "source")]
pub mod source {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "source",
            pub_export_macro: true,
            export_macro_name: "__export_source_world",
            default_bindings_module: "sluice_plugin_sdk::source::bindings",
            runtime_path: "sluice_plugin_sdk::__wit_bindgen::rt",
        });
    }
    common!(bindings);

    /// A source task: reads from somewhere and returns records with their source offsets.
    pub trait Source: Sized + 'static {
        fn spec() -> Vec<ConfigField> {
            Vec::new()
        }

        /// Called once per task; `task` is in `0..tasks`. Resume with [`committed_offset`].
        fn open(config: &Config, task: u32, tasks: u32) -> Result<Self, Error>;

        /// At most `max` records; return an empty batch soon when nothing is new.
        fn poll(&mut self, max: u32) -> Result<Vec<Record>, Error>;

        /// The runtime stored these (source partition, source offset) pairs (JSON text).
        fn commit(&mut self, _offsets: Vec<(String, String)>) -> Result<(), Error> {
            Ok(())
        }
    }

    std::thread_local! {
        static STATE: std::cell::RefCell<Option<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(None) };
    }

    fn with<T: Source, R>(f: impl FnOnce(&mut T) -> Result<R, Error>) -> Result<R, Error> {
        STATE.with(|s| {
            let mut state = s.borrow_mut();
            let t = state
                .as_mut()
                .and_then(|b| b.downcast_mut::<T>())
                .ok_or_else(|| Error::Fatal("called before open".to_owned()))?;
            f(t)
        })
    }

    #[doc(hidden)]
    pub fn __open<T: Source>(
        config: Vec<(String, String)>,
        task: u32,
        tasks: u32,
    ) -> Result<(), Error> {
        let t = T::open(&Config::new(config), task, tasks)?;
        STATE.with(|s| *s.borrow_mut() = Some(Box::new(t)));
        Ok(())
    }

    #[doc(hidden)]
    pub fn __poll<T: Source>(max: u32) -> Result<bindings::sluice::connector::types::Batch, Error> {
        with::<T, _>(|t| t.poll(max)).map(__packed::pack)
    }

    #[doc(hidden)]
    pub fn __commit<T: Source>(offsets: Vec<(String, String)>) -> Result<(), Error> {
        with::<T, _>(|t| t.commit(offsets))
    }

    /// Exports a [`Source`] implementation as the plugin's `source-task`.
    #[macro_export]
    macro_rules! export_source {
        ($t:ty) => {
            #[doc(hidden)]
            struct __SluiceSource;
            impl $crate::source::bindings::exports::sluice::connector::source_task::Guest
                for __SluiceSource
            {
                fn spec() -> Vec<$crate::source::ConfigField> {
                    <$t as $crate::source::Source>::spec()
                }
                fn open(
                    config: Vec<(String, String)>,
                    task: u32,
                    tasks: u32,
                ) -> Result<(), $crate::source::Error> {
                    $crate::source::__open::<$t>(config, task, tasks)
                }
                fn poll(
                    max: u32,
                ) -> Result<
                    $crate::source::bindings::sluice::connector::types::Batch,
                    $crate::source::Error,
                > {
                    $crate::source::__poll::<$t>(max)
                }
                fn commit(offsets: Vec<(String, String)>) -> Result<(), $crate::source::Error> {
                    $crate::source::__commit::<$t>(offsets)
                }
            }
            $crate::source::bindings::__export_source_world!(
                __SluiceSource with_types_in $crate::source::bindings
            );
        };
    }
}

/// Sink plugins: implement [`sink::Sink`] and use [`export_sink!`].
#[cfg(feature = "sink")]
pub mod sink {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sink",
            pub_export_macro: true,
            export_macro_name: "__export_sink_world",
            default_bindings_module: "sluice_plugin_sdk::sink::bindings",
            runtime_path: "sluice_plugin_sdk::__wit_bindgen::rt",
        });
    }
    common!(bindings);

    /// A sink task: writes records somewhere. Delivery is at least once.
    pub trait Sink: Sized + 'static {
        fn spec() -> Vec<ConfigField> {
            Vec::new()
        }

        fn open(config: &Config, task: u32) -> Result<Self, Error>;

        fn put(&mut self, batch: Vec<Record>) -> Result<(), Error>;

        /// Make everything put so far durable.
        fn flush(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }

    std::thread_local! {
        static STATE: std::cell::RefCell<Option<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(None) };
    }

    fn with<T: Sink, R>(f: impl FnOnce(&mut T) -> Result<R, Error>) -> Result<R, Error> {
        STATE.with(|s| {
            let mut state = s.borrow_mut();
            let t = state
                .as_mut()
                .and_then(|b| b.downcast_mut::<T>())
                .ok_or_else(|| Error::Fatal("called before open".to_owned()))?;
            f(t)
        })
    }

    #[doc(hidden)]
    pub fn __open<T: Sink>(config: Vec<(String, String)>, task: u32) -> Result<(), Error> {
        let t = T::open(&Config::new(config), task)?;
        STATE.with(|s| *s.borrow_mut() = Some(Box::new(t)));
        Ok(())
    }

    #[doc(hidden)]
    pub fn __put<T: Sink>(batch: bindings::sluice::connector::types::Batch) -> Result<(), Error> {
        let records = __packed::unpack(batch);
        with::<T, _>(|t| t.put(records))
    }

    #[doc(hidden)]
    pub fn __flush<T: Sink>() -> Result<(), Error> {
        with::<T, _>(|t| t.flush())
    }

    /// Exports a [`Sink`] implementation as the plugin's `sink-task`.
    #[macro_export]
    macro_rules! export_sink {
        ($t:ty) => {
            #[doc(hidden)]
            struct __SluiceSink;
            impl $crate::sink::bindings::exports::sluice::connector::sink_task::Guest
                for __SluiceSink
            {
                fn spec() -> Vec<$crate::sink::ConfigField> {
                    <$t as $crate::sink::Sink>::spec()
                }
                fn open(config: Vec<(String, String)>, task: u32) -> Result<(), $crate::sink::Error> {
                    $crate::sink::__open::<$t>(config, task)
                }
                fn put(
                    batch: $crate::sink::bindings::sluice::connector::types::Batch,
                ) -> Result<(), $crate::sink::Error> {
                    $crate::sink::__put::<$t>(batch)
                }
                fn flush() -> Result<(), $crate::sink::Error> {
                    $crate::sink::__flush::<$t>()
                }
            }
            $crate::sink::bindings::__export_sink_world!(
                __SluiceSink with_types_in $crate::sink::bindings
            );
        };
    }
}
