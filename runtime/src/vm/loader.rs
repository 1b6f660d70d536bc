//! Program images for the VM: a flat binary, or an ELF32 RISC-V executable's PT_LOAD segments.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

/// Why an image could not be built or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("malformed ELF: {0}")]
    Elf(String),
    #[error("not a RISC-V 32-bit little-endian executable")]
    WrongKind,
    #[error("segment of {len} bytes at {addr:#x} does not fit in memory")]
    OutOfMemory { addr: u32, len: u32 },
}

/// One region of memory to initialise: `data` at `addr`, zero-filled up to `mem_size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub addr: u32,
    pub data: Vec<u8>,
    pub mem_size: u32,
    /// Whether stores may change the segment (false for code and read-only data).
    pub writable: bool,
}

/// A loadable program: its segments and entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub entry: u32,
    pub segments: Vec<Segment>,
}

impl Image {
    /// A flat binary loaded at `base` and entered there; the whole image is writable (a flat
    /// binary does not say where code ends).
    pub fn flat(bytes: &[u8], base: u32) -> Result<Image, LoadError> {
        let len = u32::try_from(bytes.len()).map_err(|_| LoadError::OutOfMemory {
            addr: base,
            len: u32::MAX,
        })?;
        Ok(Image {
            entry: base,
            segments: vec![Segment {
                addr: base,
                data: bytes.to_vec(),
                mem_size: len,
                writable: true,
            }],
        })
    }

    /// The PT_LOAD segments of an ELF32 little-endian RISC-V executable (`ET_EXEC`); segments
    /// without `PF_W` become read-only.
    pub fn elf(bytes: &[u8]) -> Result<Image, LoadError> {
        let bad = |e: object::read::Error| LoadError::Elf(e.to_string());
        let header = elf::FileHeader32::<LittleEndian>::parse(bytes).map_err(bad)?;
        let endian = header.endian().map_err(bad)?;
        if header.e_machine(endian) != elf::EM_RISCV || header.e_type(endian) != elf::ET_EXEC {
            return Err(LoadError::WrongKind);
        }
        let mut segments = Vec::new();
        for ph in header.program_headers(endian, bytes).map_err(bad)? {
            if ph.p_type(endian) != elf::PT_LOAD {
                continue;
            }
            let data = ph
                .data(endian, bytes)
                .map_err(|()| LoadError::Elf("segment outside the file".into()))?;
            let mem_size = ph.p_memsz(endian);
            if data.len() as u64 > u64::from(mem_size) {
                return Err(LoadError::Elf(
                    "segment file size exceeds its memory size".into(),
                ));
            }
            segments.push(Segment {
                addr: ph.p_vaddr(endian),
                data: data.to_vec(),
                mem_size,
                writable: ph.p_flags(endian) & elf::PF_W != 0,
            });
        }
        Ok(Image {
            entry: header.e_entry(endian),
            segments,
        })
    }
}
