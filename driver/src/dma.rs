//! DMA memory: IOVA newtype, buffers shared with the device, and the IOVA range allocator.

use crate::error::{Error, Result};
use bytemuck::Pod;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, Ordering};
use std::sync::Arc;

/// An address in the device's view of host memory (I/O virtual address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Iova(pub u64);

impl Iova {
    /// This address plus `bytes`.
    pub fn offset(self, bytes: u64) -> Iova {
        Iova(self.0 + bytes)
    }
}

impl std::fmt::Display for Iova {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Where DMA buffers come from and go back to; implemented by each transport.
pub trait DmaPool: Send + Sync {
    /// Returns a range handed out by this pool.
    fn free(&self, iova: Iova, len: usize);
}

/// A buffer of host memory the device can reach at [`DmaBuf::iova`].
///
/// The device may read or write it at any time while a command that names it is in flight;
/// the host touches it only before submitting and after the completion (the queue code orders
/// both sides with release/acquire fences around doorbells and phase bits).
pub struct DmaBuf {
    ptr: NonNull<u8>,
    len: usize,
    iova: Iova,
    pool: Arc<dyn DmaPool>,
}

// SAFETY: a DmaBuf is an exclusive handle to its range (the pool never hands it out twice), and
// all access goes through bounds-checked copies; moving or sharing it between threads is as safe
// as for a `Vec<u8>` behind `&`/`&mut` (mutation needs `&mut self`).
unsafe impl Send for DmaBuf {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for DmaBuf {}

impl DmaBuf {
    /// Wraps a range handed out by `pool`.
    ///
    /// # Safety
    /// `ptr` must point to `len` bytes of memory that stay valid until `pool.free(iova, len)` is
    /// called, that the pool gives to no one else meanwhile, and that the device reaches at `iova`.
    pub unsafe fn from_raw(
        ptr: NonNull<u8>,
        len: usize,
        iova: Iova,
        pool: Arc<dyn DmaPool>,
    ) -> DmaBuf {
        DmaBuf {
            ptr,
            len,
            iova,
            pool,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device address of byte 0.
    pub fn iova(&self) -> Iova {
        self.iova
    }

    /// Device address of byte `offset` (which may equal `len`, the end).
    pub fn iova_at(&self, offset: usize) -> Result<Iova> {
        self.check(offset, 0)?;
        Ok(self.iova.offset(offset as u64))
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// Copies `data` into the buffer at `offset`.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        // SAFETY: bounds checked above; `ptr` is valid for `len` bytes (from_raw contract) and
        // `data` cannot overlap it (it is a separate borrow).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    /// Copies bytes at `offset` out of the buffer.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.check(offset, out.len())?;
        fence(Ordering::Acquire);
        // SAFETY: bounds checked; `out` is a separate borrow.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        Ok(())
    }

    /// The whole buffer as a vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        // Cannot fail: the range is the buffer itself.
        let _ = self.read(0, &mut v);
        v
    }

    /// Writes a plain-old-data value at `offset`.
    pub fn write_obj<T: Pod>(&mut self, offset: usize, value: &T) -> Result<()> {
        self.write(offset, bytemuck::bytes_of(value))
    }

    /// Reads a plain-old-data value at `offset`.
    pub fn read_obj<T: Pod>(&self, offset: usize) -> Result<T> {
        let mut v = T::zeroed();
        self.read(offset, bytemuck::bytes_of_mut(&mut v))?;
        Ok(v)
    }

    /// Sets every byte to `value`.
    pub fn fill(&mut self, value: u8) {
        // SAFETY: the whole range is ours.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), value, self.len) };
    }

    /// Loads the 16-bit little-endian word at `offset` with acquire ordering: the device's
    /// earlier writes to this buffer are visible after it (used for completion phase bits).
    pub fn load_u16_acquire(&self, offset: usize) -> Result<u16> {
        self.check(offset, 2)?;
        let p = self.ptr.as_ptr().wrapping_add(offset);
        if p.align_offset(2) != 0 {
            return Err(Error::OutOfBounds {
                offset,
                len: 2,
                size: self.len,
            });
        }
        // SAFETY: in bounds and 2-byte aligned (checked); the memory is only ever accessed
        // atomically or by the device, and lives as long as `self`.
        let atom = unsafe { AtomicU16::from_ptr(p.cast::<u16>()) };
        Ok(u16::from_le(atom.load(Ordering::Acquire)))
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        self.pool.free(self.iova, self.len);
    }
}

impl std::fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DmaBuf({} bytes at {})", self.len, self.iova)
    }
}

/// First-fit allocator of IOVA ranges with coalescing on free. Ranges are multiples of `ALIGN`.
pub struct IovaAllocator {
    free: Mutex<BTreeMap<u64, u64>>,
    base: u64,
    size: u64,
}

impl IovaAllocator {
    /// Alignment (and size granule) of every range: one cache line, enough for rings and entries.
    pub const ALIGN: u64 = 64;

    /// An allocator over `[base, base + size)`; `base` must be `ALIGN`-aligned.
    pub fn new(base: u64, size: u64) -> IovaAllocator {
        let size = size / Self::ALIGN * Self::ALIGN;
        let mut free = BTreeMap::new();
        if size > 0 {
            free.insert(base, size);
        }
        IovaAllocator {
            free: Mutex::new(free),
            base,
            size,
        }
    }

    /// Allocates `len` bytes (rounded up to `ALIGN`); returns the range start.
    pub fn alloc(&self, len: usize) -> Result<u64> {
        let want = (len.max(1) as u64).div_ceil(Self::ALIGN) * Self::ALIGN;
        let mut free = self.free.lock();
        let found = free.iter().find(|(_, &l)| l >= want).map(|(&s, &l)| (s, l));
        let Some((start, flen)) = found else {
            let avail: u64 = free.values().sum();
            return Err(Error::OutOfDmaMemory {
                want: len,
                free: avail as usize,
            });
        };
        free.remove(&start);
        if flen > want {
            free.insert(start + want, flen - want);
        }
        Ok(start)
    }

    /// Returns a range from `alloc`.
    pub fn free(&self, start: u64, len: usize) {
        let mut len = (len.max(1) as u64).div_ceil(Self::ALIGN) * Self::ALIGN;
        let mut start = start;
        debug_assert!(start >= self.base && start + len <= self.base + self.size);
        let mut free = self.free.lock();
        // Merge with the following free range, then with the preceding one.
        if let Some(next_len) = free.remove(&(start + len)) {
            len += next_len;
        }
        if let Some((&prev, &prev_len)) = free.range(..start).next_back() {
            if prev + prev_len == start {
                free.remove(&prev);
                start = prev;
                len += prev_len;
            }
        }
        free.insert(start, len);
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.free.lock().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_reuses_and_coalesces() {
        let a = IovaAllocator::new(0x1000, 64 * 10);
        let x = a.alloc(1).expect("x");
        let y = a.alloc(100).expect("y");
        let z = a.alloc(64).expect("z");
        assert_eq!((x, y, z), (0x1000, 0x1040, 0x10c0));
        assert!(a.alloc(64 * 7).is_err(), "only 6 granules remain");
        a.free(y, 100);
        a.free(x, 1);
        a.free(z, 64);
        assert_eq!(a.free_bytes(), 640);
        assert_eq!(a.alloc(640).expect("whole range again"), 0x1000);
    }
}
