//! The `vfio://` transport: a BPU on PCIe, driven from userspace through Linux VFIO.
//!
//! [`VfioTransport::open`] takes a PCI address (`DDDD:BB:DD.F`) of a function bound to
//! `vfio-pci` and, using the `pci-driver` crate's VFIO backend:
//!
//! - checks sysfs first (device present, bound to `vfio-pci`, in an IOMMU group, group node
//!   accessible) so that the usual setup mistakes fail with a message that says what to do;
//! - maps the first 64 KiB of BAR0 (the register window) and does 32-bit little-endian
//!   register accesses through the crate's region API (falling back to `pread`/`pwrite` on the
//!   device file when the kernel refuses to mmap the BAR);
//! - allocates one anonymous, page-aligned host region for DMA, maps it through the IOMMU at a
//!   fixed I/O virtual address ([`DMA_IOVA_BASE`] when the IOMMU allows it) and carves buffers
//!   out of it with [`IovaAllocator`]; the pool owns the mapping, so it outlives the transport
//!   for as long as any [`DmaBuf`] is alive, and it is unmapped (IOMMU first, then `munmap`)
//!   when the last one goes;
//! - enables memory decoding and bus mastering in the PCI command register (VFIO leaves bus
//!   mastering off, and the device needs it both for DMA and for MSI-X messages);
//! - enables one MSI-X vector per completion queue (up to 64), each signalling its own
//!   `eventfd`; [`Transport::wait_irq`] polls them. Without MSI-X the transport still works
//!   and the driver polls (`irq_vectors() == 0`).
//!
//! Dropping the transport disables MSI-X, clears bus mastering and closes the device.

use super::Transport;
use crate::dma::{DmaBuf, DmaPool, Iova, IovaAllocator};
use crate::error::{Error, Result};
use pci_driver::backends::vfio::{VfioContainer, VfioPciDevice};
use pci_driver::device::PciDevice;
use pci_driver::regions::{PciRegion, Permissions};
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of BAR0 the driver uses: 16 Ki registers of 32 bits.
pub const BAR0_LEN: usize = 64 * 1024;

/// Preferred device address of the DMA region (64 GiB: clear of the low reserved windows).
pub const DMA_IOVA_BASE: u64 = 0x10_0000_0000;

/// Most MSI-X vectors used (one per completion queue; `wait_irq` returns a 64-bit mask).
pub const MAX_VECTORS: usize = 64;

/// Longest sleep of `wait_irq` when there are no interrupts and the driver polls.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";
const SYSFS_VFIO_PCI: &str = "/sys/bus/pci/drivers/vfio-pci";

/// PCI command register: offset in config space and the bits this transport sets.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// A BPU reached through VFIO.
pub struct VfioTransport {
    bdf: String,
    /// The register window (memory-mapped, or read/written through the device file).
    bar0: Box<dyn PciRegion>,
    /// One eventfd per enabled MSI-X vector; empty when the driver polls.
    irqs: Vec<File>,
    device: VfioPciDevice,
    /// Declared last so it drops after the device is closed (which stops its DMA).
    pool: Arc<VfioDmaPool>,
}

impl VfioTransport {
    /// Opens the PCI function at `bdf` (e.g. `0000:03:00.0`), which must be bound to
    /// `vfio-pci`, with `dma_bytes` (rounded up to the IOMMU page size) of DMA memory.
    pub fn open(bdf: &str, dma_bytes: usize) -> Result<VfioTransport> {
        let bdf = parse_bdf(bdf)?;
        let sysfs = Path::new(SYSFS_PCI_DEVICES).join(&bdf);
        if !sysfs.exists() {
            return Err(Error::Vfio(format!(
                "no PCI device at {bdf} ({} does not exist): check the address with `lspci -D`",
                sysfs.display()
            )));
        }
        check_bound_to_vfio(&bdf, &sysfs)?;
        let group = iommu_group(&bdf, &sysfs)?;
        check_group_node(&bdf, group)?;

        let device = VfioPciDevice::open(&sysfs).map_err(|e| open_error(&bdf, group, &e))?;
        let bar0 = map_bar0(&bdf, &device)?;
        let pool = Arc::new(VfioDmaPool::new(&bdf, device.container(), dma_bytes)?);
        enable_bus_master(&bdf, &device)?;
        let irqs = enable_msix(&bdf, &device);
        tracing::info!(
            "opened vfio://{bdf}: IOMMU group {group}, {} MSI-X vectors, {} bytes of DMA memory at IOVA {:#x}",
            irqs.len(),
            pool.len,
            pool.iova_base
        );
        Ok(VfioTransport {
            bdf,
            bar0,
            irqs,
            device,
            pool,
        })
    }

    fn reg(&self, offset: u32) -> Result<u64> {
        if offset & 3 != 0 || offset as usize + 4 > BAR0_LEN {
            return Err(Error::Invalid(format!(
                "register offset {offset:#x} is not a 4-byte aligned offset inside the {BAR0_LEN:#x}-byte BAR0 window"
            )));
        }
        Ok(u64::from(offset))
    }
}

impl Transport for VfioTransport {
    fn describe(&self) -> String {
        format!("vfio://{}", self.bdf)
    }

    fn read32(&self, offset: u32) -> Result<u32> {
        let off = self.reg(offset)?;
        self.bar0.read_le_u32(off).map_err(|e| {
            Error::Vfio(format!(
                "{}: BAR0 read at {offset:#x} failed: {e}",
                self.bdf
            ))
        })
    }

    fn write32(&self, offset: u32, value: u32) -> Result<()> {
        let off = self.reg(offset)?;
        self.bar0.write_le_u32(off, value).map_err(|e| {
            Error::Vfio(format!(
                "{}: BAR0 write at {offset:#x} failed: {e}",
                self.bdf
            ))
        })
    }

    fn alloc_dma(&self, len: usize) -> Result<DmaBuf> {
        alloc_from(&self.pool, len)
    }

    fn irq_vectors(&self) -> u32 {
        self.irqs.len() as u32
    }

    fn wait_irq(&self, timeout: Duration) -> Result<u64> {
        if self.irqs.is_empty() {
            std::thread::sleep(timeout.min(POLL_INTERVAL));
            return Ok(0);
        }
        wait_eventfds(&self.irqs, timeout)
            .map_err(|e| Error::Vfio(format!("{}: waiting for MSI-X: {e}", self.bdf)))
    }
}

impl Drop for VfioTransport {
    fn drop(&mut self) {
        if !self.irqs.is_empty() {
            if let Err(e) = self.device.interrupts().msi_x().disable() {
                tracing::warn!("{}: disabling MSI-X failed: {e}", self.bdf);
            }
        }
        // Stop the device's DMA before the pool can go (closing the device also does this, but
        // the pool may outlive the transport only if no DMA can reach it).
        let config = self.device.config();
        let cleared = config
            .read_le_u16(PCI_COMMAND)
            .and_then(|cmd| config.write_le_u16(PCI_COMMAND, cmd & !PCI_COMMAND_MASTER));
        if let Err(e) = cleared {
            tracing::warn!("{}: clearing bus mastering failed: {e}", self.bdf);
        }
    }
}

/// BDFs (`DDDD:BB:DD.F`) of the PCI functions bound to `vfio-pci`, sorted; empty when none
/// (or when vfio-pci is not loaded).
pub fn list_devices() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(SYSFS_VFIO_PCI) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| parse_bdf(name).is_ok())
        .collect();
    out.sort();
    out
}

/* ------------------------------------------------------------------------------------------ */
/* Opening                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/// Validates a PCI address `DDDD:BB:DD.F` (hex; device ≤ 0x1f, function ≤ 7) and returns it in
/// sysfs spelling (lower case).
fn parse_bdf(s: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::Vfio(format!(
            "invalid PCI address {s:?}: {why}; expected DDDD:BB:DD.F in hex, e.g. 0000:03:00.0 (`lspci -D` lists them)"
        ))
    };
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 12 || b[4] != b':' || b[7] != b':' || b[10] != b'.' {
        return Err(bad("not of the form DDDD:BB:DD.F"));
    }
    let hex = |r: Range<usize>| -> Option<u32> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_hexdigit()) {
            u32::from_str_radix(t, 16).ok()
        } else {
            None
        }
    };
    let (Some(domain), Some(bus), Some(dev), Some(func)) =
        (hex(0..4), hex(5..7), hex(8..10), hex(11..12))
    else {
        return Err(bad("fields must be hexadecimal"));
    };
    if dev > 0x1f {
        return Err(bad("device number must be at most 1f"));
    }
    if func > 7 {
        return Err(bad("function number must be at most 7"));
    }
    Ok(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

/// Name of the driver bound to the device at `sysfs`, if any.
fn bound_driver(sysfs: &Path) -> Option<String> {
    let link = std::fs::read_link(sysfs.join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

fn check_bound_to_vfio(bdf: &str, sysfs: &Path) -> Result<()> {
    let bind = format!(
        "modprobe vfio-pci; echo vfio-pci > {}/driver_override; echo {bdf} > {SYSFS_VFIO_PCI}/bind",
        sysfs.display()
    );
    match bound_driver(sysfs).as_deref() {
        Some("vfio-pci") => Ok(()),
        Some(other) => Err(Error::Vfio(format!(
            "PCI device {bdf} is bound to {other}, not vfio-pci: unbind it and bind it to vfio-pci: \
             echo {bdf} > /sys/bus/pci/drivers/{other}/unbind; {bind}"
        ))),
        None => Err(Error::Vfio(format!(
            "PCI device {bdf} is not bound to any driver: bind the device to vfio-pci: {bind}"
        ))),
    }
}

fn iommu_group(bdf: &str, sysfs: &Path) -> Result<u32> {
    let no_group = || {
        Error::Vfio(format!(
            "PCI device {bdf} has no IOMMU group: enable the IOMMU (VT-d / AMD-Vi in the firmware, \
             and intel_iommu=on or amd_iommu=on on the kernel command line), then reboot"
        ))
    };
    let link = std::fs::read_link(sysfs.join("iommu_group")).map_err(|_| no_group())?;
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(no_group)
}

/// Opens (and closes again) the group's device node to turn the usual failures into advice.
fn check_group_node(bdf: &str, group: u32) -> Result<()> {
    let node = format!("/dev/vfio/{group}");
    match std::fs::OpenOptions::new().read(true).write(true).open(&node) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::Vfio(format!(
            "{node} (IOMMU group of {bdf}) does not exist: load vfio-pci (modprobe vfio-pci) and bind the device to it"
        ))),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(Error::Vfio(format!(
            "permission denied on {node} (IOMMU group of {bdf}): run as root or add a udev rule, e.g. \
             SUBSYSTEM==\"vfio\", GROUP=\"bpu\", MODE=\"0660\", and raise the locked-memory limit (ulimit -l)"
        ))),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(Error::Vfio(format!(
            "{node} (IOMMU group of {bdf}) is busy: another process, or another open transport in this one, \
             is using the device"
        ))),
        Err(e) => Err(Error::Vfio(format!("cannot open {node} (IOMMU group of {bdf}): {e}"))),
    }
}

/// Members of IOMMU group `group` bound to a driver that makes the group unusable by VFIO.
fn group_conflicts(group: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/sys/kernel/iommu_groups/{group}/devices")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let drv = bound_driver(&e.path())?;
            let ok = matches!(drv.as_str(), "vfio-pci" | "pci-stub" | "pcieport");
            (!ok).then(|| format!("{} ({drv})", e.file_name().to_string_lossy()))
        })
        .collect()
}

fn open_error(bdf: &str, group: u32, e: &io::Error) -> Error {
    let mut msg = format!("opening {bdf} (IOMMU group {group}) failed: {e}");
    let others = group_conflicts(group);
    if !others.is_empty() {
        msg.push_str(&format!(
            "; every device in the group must be bound to vfio-pci or unbound, but these are not: {}",
            others.join(", ")
        ));
    } else if e.kind() == io::ErrorKind::PermissionDenied {
        msg.push_str(
            "; /dev/vfio/vfio must be readable and writable: run as root or fix its permissions",
        );
    } else if e.kind() == io::ErrorKind::NotFound {
        msg.push_str("; is the vfio module loaded (modprobe vfio-pci)?");
    } else {
        msg.push_str("; this needs the type1 IOMMU and Linux 5.10 or newer");
    }
    Error::Vfio(msg)
}

fn map_bar0(bdf: &str, device: &VfioPciDevice) -> Result<Box<dyn PciRegion>> {
    let bar = device.bar(0).ok_or_else(|| {
        Error::Vfio(format!(
            "{bdf} has no BAR0: is this a BPU (check the bitstream)?"
        ))
    })?;
    if bar.len() < BAR0_LEN as u64 {
        return Err(Error::Vfio(format!(
            "{bdf}: BAR0 is {} bytes, the BPU needs at least {BAR0_LEN}: is this a BPU (check the bitstream)?",
            bar.len()
        )));
    }
    if bar.permissions() != Permissions::ReadWrite {
        return Err(Error::Vfio(format!(
            "{bdf}: BAR0 is not readable and writable"
        )));
    }
    if bar.is_mappable() {
        match bar.map(0..BAR0_LEN as u64, Permissions::ReadWrite) {
            Ok(mapped) => return Ok(Box::new(mapped)),
            Err(e) => tracing::warn!(
                "{bdf}: cannot mmap BAR0 ({e}); register accesses go through the device file"
            ),
        }
    } else {
        tracing::warn!("{bdf}: BAR0 is not mappable; register accesses go through the device file");
    }
    Ok(Box::new(bar))
}

fn enable_bus_master(bdf: &str, device: &VfioPciDevice) -> Result<()> {
    // A raw read-modify-write: the crate's structured `command()` accessor declares bit 10
    // (INTx disable) write-1-to-clear and would write it as 0.
    let config = device.config();
    let result = config.read_le_u16(PCI_COMMAND).and_then(|cmd| {
        let want = cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        if want == cmd {
            Ok(())
        } else {
            config.write_le_u16(PCI_COMMAND, want)
        }
    });
    result.map_err(|e| {
        Error::Vfio(format!(
            "{bdf}: enabling bus mastering in the PCI command register failed: {e}"
        ))
    })
}

/// Enables one MSI-X vector per eventfd, up to [`MAX_VECTORS`]; empty (with a warning) when
/// that is impossible, and the driver polls.
fn enable_msix(bdf: &str, device: &VfioPciDevice) -> Vec<File> {
    let interrupts = device.interrupts();
    let msix = interrupts.msi_x();
    let n = msix.max().min(MAX_VECTORS);
    if n == 0 {
        tracing::warn!("{bdf}: the device exposes no MSI-X vectors; the driver will poll");
        return Vec::new();
    }
    let fds = match (0..n)
        .map(|_| new_eventfd())
        .collect::<io::Result<Vec<File>>>()
    {
        Ok(fds) => fds,
        Err(e) => {
            tracing::warn!("{bdf}: cannot create eventfds for MSI-X ({e}); the driver will poll");
            return Vec::new();
        }
    };
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    match msix.enable(&raw) {
        Ok(()) => fds,
        Err(e) => {
            tracing::warn!("{bdf}: enabling {n} MSI-X vectors failed ({e}); the driver will poll");
            Vec::new()
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Interrupts                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/// A non-blocking eventfd, as a `File` so that reading it needs no unsafe code.
fn new_eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Waits up to `timeout` for any of `fds` (eventfds, bit i = `fds[i]`), drains the ones that
/// are readable and returns their mask (0 on timeout).
fn wait_eventfds(fds: &[File], timeout: Duration) -> io::Result<u64> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_nanos()
                    .div_ceil(1_000_000)
                    .min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `pfds` is a live, exclusively borrowed array of `pfds.len()` pollfd structs
        // for the whole call; poll only writes their `revents` fields.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if rc > 0 {
            break;
        }
        if rc == 0 {
            return Ok(0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(0);
        }
    }
    let mut mask = 0u64;
    for (i, (p, mut f)) in pfds.iter().zip(fds).enumerate() {
        if p.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(io::Error::other(format!(
                "eventfd of vector {i} failed (revents {:#x})",
                p.revents
            )));
        }
        if p.revents & libc::POLLIN != 0 {
            let mut count = [0u8; 8];
            match f.read(&mut count) {
                Ok(8) => mask |= 1 << i,
                Ok(_) => {}
                // Another waiter drained it first.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(mask)
}

/* ------------------------------------------------------------------------------------------ */
/* DMA memory                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/// An anonymous private mapping, unmapped on drop.
struct AnonMmap {
    base: NonNull<libc::c_void>,
    len: usize,
}

impl AnonMmap {
    /// Maps `len` bytes (a multiple of the page size) of zeroed memory.
    fn new(len: usize) -> io::Result<AnonMmap> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(AnonMmap { base, len })
    }
}

impl Drop for AnonMmap {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is exactly the mapping made in `new`, and the owner (the pool)
        // drops it only once no buffer points into it and the IOMMU no longer maps it.
        if unsafe { libc::munmap(self.base.as_ptr(), self.len) } != 0 {
            tracing::warn!(
                "munmap of the DMA region failed: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// The DMA region: host memory mapped through the IOMMU at `iova_base`, and its allocator.
struct VfioDmaPool {
    /// The IOMMU mapping the region; `None` only in unit tests (memory not mapped).
    container: Option<Arc<VfioContainer>>,
    alloc: IovaAllocator,
    iova_base: u64,
    /// Host address of the byte the device sees at `iova_base`.
    host: NonNull<u8>,
    len: usize,
    /// `None` once dropped, or leaked on purpose when the IOMMU unmap failed.
    mem: Option<AnonMmap>,
}

// SAFETY: the raw pointers only name the region, which the pool owns and never hands out twice
// (the allocator is behind a mutex); buffers carved from it do their own synchronisation.
unsafe impl Send for VfioDmaPool {}
// SAFETY: as above; `&VfioDmaPool` only allocates, frees (both through the locked allocator) and
// computes addresses.
unsafe impl Sync for VfioDmaPool {}

impl DmaPool for VfioDmaPool {
    fn free(&self, iova: Iova, len: usize) {
        self.alloc.free(iova.0, len);
    }
}

impl VfioDmaPool {
    /// Allocates `dma_bytes` (rounded up) and maps it through the container's IOMMU.
    fn new(bdf: &str, container: &Arc<VfioContainer>, dma_bytes: usize) -> Result<VfioDmaPool> {
        let iommu = container.iommu();
        let align = iommu.alignment().max(page_size());
        let len = round_up(dma_bytes.max(1), align).ok_or_else(|| {
            Error::Vfio(format!(
                "{bdf}: {dma_bytes} bytes of DMA memory is too much"
            ))
        })?;
        let iova = choose_iova(iommu.valid_iova_ranges(), len as u64, align as u64).ok_or_else(|| {
            Error::Vfio(format!(
                "{bdf}: the IOMMU has no free I/O address range of {len} bytes (valid ranges: {:x?}): ask for less DMA memory",
                iommu.valid_iova_ranges()
            ))
        })?;
        let mut pool = VfioDmaPool::unmapped(len, align, iova).map_err(|e| {
            Error::Vfio(format!(
                "{bdf}: cannot allocate {len} bytes of DMA memory: {e}"
            ))
        })?;
        // SAFETY: `host..host+len` is memory this pool owns and keeps mapped (in the process)
        // until after it removes this IOMMU mapping in `drop`; both addresses are aligned to
        // the IOMMU page size and `len` is a multiple of it.
        let mapped = unsafe {
            iommu.map(
                iova,
                len,
                pool.host.as_ptr().cast_const(),
                Permissions::ReadWrite,
            )
        };
        if let Err(e) = mapped {
            let hint = if e.to_string().contains("os error 12") {
                format!(
                    "the locked-memory limit ({}) is too low: raise it (ulimit -l, LimitMEMLOCK= for a systemd \
                     service) or run as root",
                    memlock_limit()
                )
            } else {
                "check dmesg for IOMMU errors".to_string()
            };
            return Err(Error::Vfio(format!(
                "{bdf}: mapping {len} bytes of DMA memory at IOVA {iova:#x} through the IOMMU failed: {e}; {hint}"
            )));
        }
        pool.container = Some(Arc::clone(container));
        Ok(pool)
    }

    /// The host side of a pool: `len` zeroed bytes aligned to `align` (a power of two, at least
    /// a page), which the device will reach at `iova`. Not yet in any IOMMU.
    fn unmapped(len: usize, align: usize, iova: u64) -> io::Result<VfioDmaPool> {
        // Over-allocate so that an aligned start exists (IOMMU pages may exceed CPU pages).
        let page = page_size();
        let total = len
            .checked_add(align - page)
            .ok_or_else(|| io::Error::other("size overflows"))?;
        let mem = AnonMmap::new(total)?;
        let base = mem.base.as_ptr().cast::<u8>();
        let skip = base.align_offset(align);
        if skip > total - len {
            return Err(io::Error::other("cannot align the DMA region"));
        }
        let host = NonNull::new(base.wrapping_add(skip))
            .ok_or_else(|| io::Error::other("NULL DMA region"))?;
        // Keep a forked child from sharing (and copy-on-writing) memory the device writes.
        // SAFETY: the range lies inside our own mapping; madvise does not access its contents.
        if unsafe { libc::madvise(host.as_ptr().cast(), len, libc::MADV_DONTFORK) } != 0 {
            tracing::debug!(
                "madvise(MADV_DONTFORK) on the DMA region failed: {}",
                io::Error::last_os_error()
            );
        }
        Ok(VfioDmaPool {
            container: None,
            alloc: IovaAllocator::new(iova, len as u64),
            iova_base: iova,
            host,
            len,
            mem: Some(mem),
        })
    }
}

impl Drop for VfioDmaPool {
    fn drop(&mut self) {
        let Some(mem) = self.mem.take() else { return };
        if let Some(container) = &self.container {
            if let Err(e) = container.iommu().unmap(self.iova_base, self.len) {
                // The device might still reach the pages: leak them rather than reuse them.
                tracing::error!(
                    "IOMMU unmap of the DMA region at {:#x} failed ({e}); leaking {} bytes",
                    self.iova_base,
                    self.len
                );
                std::mem::forget(mem);
                return;
            }
        }
        drop(mem);
    }
}

/// Carves a zeroed buffer of `len` bytes out of `pool`.
fn alloc_from(pool: &Arc<VfioDmaPool>, len: usize) -> Result<DmaBuf> {
    let iova = pool.alloc.alloc(len)?;
    let offset = (iova - pool.iova_base) as usize;
    let ptr = NonNull::new(pool.host.as_ptr().wrapping_add(offset)).ok_or(Error::Closed)?;
    let dyn_pool: Arc<dyn DmaPool> = pool.clone();
    // SAFETY: `iova..iova+len` was just handed out by the allocator over
    // `[iova_base, iova_base+pool.len)`, so host bytes `offset..offset+len` lie inside the
    // region, which lives as long as the pool (kept alive by the buffer's Arc); no one else gets
    // the range until the buffer's drop frees it; and the IOMMU maps `host + k` at
    // `iova_base + k`.
    let mut buf = unsafe { DmaBuf::from_raw(ptr, len, Iova(iova), dyn_pool) };
    buf.fill(0);
    Ok(buf)
}

/// Where to put `len` bytes in the device's address space: [`DMA_IOVA_BASE`] if the IOMMU
/// allows it, else the lowest `align`-aligned start that fits in one of `ranges` (treated as
/// half-open, which is conservative).
fn choose_iova(ranges: &[Range<u64>], len: u64, align: u64) -> Option<u64> {
    let fits = |start: u64, r: &Range<u64>| {
        start >= r.start && start.checked_add(len).is_some_and(|end| end <= r.end)
    };
    if ranges.iter().any(|r| fits(DMA_IOVA_BASE, r)) {
        return Some(DMA_IOVA_BASE);
    }
    ranges
        .iter()
        .filter_map(|r| {
            let start = r.start.checked_next_multiple_of(align.max(1))?;
            fits(start, r).then_some(start)
        })
        .min()
}

fn round_up(n: usize, align: usize) -> Option<usize> {
    n.checked_next_multiple_of(align)
}

fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// The soft RLIMIT_MEMLOCK, for error messages.
fn memlock_limit() -> String {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return "unknown".to_string();
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} bytes", lim.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn open_missing_device_names_it() {
        match VfioTransport::open("0000:ff:1f.7", 1 << 20) {
            Err(Error::Vfio(msg)) => assert!(msg.contains("0000:ff:1f.7"), "message: {msg}"),
            Err(other) => panic!("expected Error::Vfio, got {other:?}"),
            Ok(_) => panic!("opened a device at 0000:ff:1f.7"),
        }
    }

    #[test]
    fn malformed_bdf_is_rejected() {
        for bad in [
            "",
            "03:00.0",
            "0000:03:00",
            "0000:03:00.0x",
            "0000-03-00.0",
            "000g:03:00.0",
            "0000:03:20.0",
            "0000:03:00.8",
            "0000:+3:00.0",
            "0000:é:00.0",
        ] {
            match VfioTransport::open(bad, 1 << 20) {
                Err(Error::Vfio(msg)) => assert!(msg.contains("DDDD:BB:DD.F"), "{bad:?}: {msg}"),
                Err(other) => panic!("{bad:?}: expected Error::Vfio, got {other:?}"),
                Ok(_) => panic!("{bad:?} accepted"),
            }
        }
    }

    #[test]
    fn bdf_is_normalised() {
        assert_eq!(parse_bdf("0000:03:00.0").expect("valid"), "0000:03:00.0");
        assert_eq!(parse_bdf("000A:Bc:1F.7").expect("valid"), "000a:bc:1f.7");
    }

    #[test]
    fn list_devices_does_not_panic() {
        for bdf in list_devices() {
            assert!(parse_bdf(&bdf).is_ok(), "{bdf}");
        }
    }

    #[test]
    fn iova_prefers_fixed_base_and_falls_back() {
        let page = 4096;
        let one = |r: Range<u64>| vec![r];
        assert_eq!(
            choose_iova(&one(0x1000..u64::MAX), 1 << 20, page),
            Some(DMA_IOVA_BASE)
        );
        // Base excluded: lowest aligned start that fits.
        assert_eq!(
            choose_iova(&[0x1800..0x10_0000, 0x20_0000..0x80_0000], 0x10_0000, page),
            Some(0x20_0000)
        );
        assert_eq!(
            choose_iova(&one(0x1800..0x10_0000), 0x2000, page),
            Some(0x2000)
        );
        assert_eq!(choose_iova(&one(0x1000..0x2000), 0x2000, page), None);
        assert_eq!(choose_iova(&[], 0x1000, page), None);
    }

    #[test]
    fn pool_hands_out_zeroed_aligned_buffers() {
        let page = page_size();
        let align = page * 4;
        let pool = Arc::new(VfioDmaPool::unmapped(align * 2, align, DMA_IOVA_BASE).expect("mmap"));
        assert_eq!(pool.host.as_ptr().align_offset(align), 0);
        let mut a = alloc_from(&pool, 100).expect("a");
        assert_eq!(a.iova(), Iova(DMA_IOVA_BASE));
        a.fill(0xab);
        drop(a);
        // The same range comes back, zeroed.
        let b = alloc_from(&pool, 100).expect("b");
        assert_eq!(b.iova(), Iova(DMA_IOVA_BASE));
        assert!(b.to_vec().iter().all(|&x| x == 0));
        assert!(alloc_from(&pool, align * 2).is_err(), "exhausted");
        // A buffer keeps the region alive after the last other handle goes.
        drop(pool);
        assert_eq!(b.to_vec().len(), 100);
    }

    #[test]
    fn eventfds_report_and_drain() {
        let fds: Vec<File> = (0..3).map(|_| new_eventfd().expect("eventfd")).collect();
        assert_eq!(
            wait_eventfds(&fds, Duration::from_millis(1)).expect("wait"),
            0
        );
        (&fds[2]).write_all(&1u64.to_ne_bytes()).expect("signal");
        (&fds[0]).write_all(&5u64.to_ne_bytes()).expect("signal");
        assert_eq!(
            wait_eventfds(&fds, Duration::from_secs(5)).expect("wait"),
            0b101
        );
        let t = Instant::now();
        assert_eq!(
            wait_eventfds(&fds, Duration::from_millis(20)).expect("wait"),
            0,
            "drained"
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
    }
}
