"""Which shared libraries a program asks the loader for, read from the file itself: ELF (Linux) DT_NEEDED,
PE (Windows) import and delay-load tables, Mach-O (macOS) load commands. Installing the client programs keeps
exactly the libraries they need out of a build that also carries the server, its modules, ICU and a GUI
toolkit (StackBuilder's), whatever platform the build is for. Standard library only."""
import struct

_MACHO_LOADS = {0xc, 0x80000018, 0x8000001f, 0x20}  # LOAD_DYLIB, LOAD_WEAK_DYLIB, REEXPORT_DYLIB, LAZY_LOAD_DYLIB


def needed(data: bytes) -> list:
    """The names the file's loader looks for ('libpq.so.5', 'libpq.dll', '@loader_path/../lib/libpq.5.dylib');
    [] for a file that is no program or library of these three kinds."""
    try:
        if data[:4] == b'\x7fELF':
            return _elf(data)
        if data[:2] == b'MZ':
            return _pe(data)
        return _macho(data)
    except (struct.error, ValueError, IndexError):
        return []


def _cstr(data: bytes, at: int) -> str:
    return data[at:data.index(b'\0', at)].decode('utf-8', 'replace')


def _elf(data: bytes) -> list:
    is64, order = data[4] == 2, '<' if data[5] == 1 else '>'
    phoff = struct.unpack_from(order + ('Q' if is64 else 'I'), data, 0x20 if is64 else 0x1c)[0]
    phentsize, phnum = struct.unpack_from(order + 'HH', data, 0x36 if is64 else 0x2a)
    loads, dynamic = [], None
    for i in range(phnum):
        at = phoff + i * phentsize
        if is64:
            kind, _, offset, vaddr, _, filesz = struct.unpack_from(order + 'IIQQQQ', data, at)
        else:
            kind, offset, vaddr, _, filesz = struct.unpack_from(order + 'IIIII', data, at)
        if kind == 1:      # PT_LOAD: maps file offsets to addresses
            loads.append((vaddr, filesz, offset))
        elif kind == 2:    # PT_DYNAMIC
            dynamic = (offset, filesz)
    if dynamic is None:
        return []
    fmt, size = (order + 'qQ', 16) if is64 else (order + 'iI', 8)
    names, strtab = [], None
    for at in range(dynamic[0], dynamic[0] + dynamic[1], size):
        tag, value = struct.unpack_from(fmt, data, at)
        if tag == 0:
            break
        if tag == 1:       # DT_NEEDED: an offset into the string table
            names.append(value)
        elif tag == 5:     # DT_STRTAB: an address
            strtab = value
    base = next(offset + strtab - vaddr for vaddr, filesz, offset in loads if vaddr <= strtab < vaddr + filesz)
    return [_cstr(data, base + n) for n in names]


def _pe(data: bytes) -> list:
    pe = struct.unpack_from('<I', data, 0x3c)[0]
    if data[pe:pe + 4] != b'PE\0\0':
        return []
    sections_count = struct.unpack_from('<H', data, pe + 6)[0]
    optional_size = struct.unpack_from('<H', data, pe + 20)[0]
    optional = pe + 24
    directories = optional + (112 if struct.unpack_from('<H', data, optional)[0] == 0x20b else 96)  # PE32+ or PE32
    sections = [struct.unpack_from('<IIII', data, optional + optional_size + 40 * i + 8) for i in range(sections_count)]

    def offset(rva):
        for vsize, vaddr, rawsize, raw in sections:
            if vaddr <= rva < vaddr + max(vsize, rawsize):
                return rva - vaddr + raw
        raise ValueError(f'address {rva:#x} is in no section')
    names = []
    # Directory 1: imports (20-byte descriptors, name at +12); 13: delay-load imports (32 bytes, name at +4).
    for index, step, name_at in ((1, 20, 12), (13, 32, 4)):
        rva = struct.unpack_from('<I', data, directories + 8 * index)[0]
        at = offset(rva) if rva else None
        while at is not None and data[at:at + step] != b'\0' * step:
            names.append(_cstr(data, offset(struct.unpack_from('<I', data, at + name_at)[0])))
            at += step
    return names


def _macho(data: bytes) -> list:
    magic = struct.unpack_from('<I', data, 0)[0]
    if struct.unpack_from('>I', data, 0)[0] == 0xcafebabe:  # universal: the slices need the same libraries
        return _macho(data[struct.unpack_from('>I', data, 16)[0]:])
    if magic not in (0xfeedface, 0xfeedfacf):
        return []
    count, at = struct.unpack_from('<I', data, 16)[0], 32 if magic == 0xfeedfacf else 28
    names = []
    for _ in range(count):
        command, size = struct.unpack_from('<II', data, at)
        if command in _MACHO_LOADS:
            names.append(_cstr(data, at + struct.unpack_from('<I', data, at + 8)[0]))
        at += size
    return names
