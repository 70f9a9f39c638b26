/* mini: freestanding string helpers, number parsing and kprintf. */
#include "kernel.h"

void *memset(void *d, int c, usize n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, usize n)
{
	u8 *dp = d;
	const u8 *sp = s;
	while (n--)
		*dp++ = *sp++;
	return d;
}

void *memmove(void *d, const void *s, usize n)
{
	u8 *dp = d;
	const u8 *sp = s;
	if (dp < sp) {
		while (n--)
			*dp++ = *sp++;
	} else {
		while (n--)
			dp[n] = sp[n];
	}
	return d;
}

int memcmp(const void *a, const void *b, usize n)
{
	const u8 *x = a, *y = b;
	for (usize i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

usize strlen(const char *s)
{
	usize n = 0;
	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (u8)*a - (u8)*b;
}

int strncmp(const char *a, const char *b, usize n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (u8)*a - (u8)*b;
		if (!*a)
			return 0;
	}
	return 0;
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 99;
}

/* Parse a number at *s (base 0 = "0x" prefix means hex, else decimal).
 * Advances *s. Returns 0 on success, -1 on no digits or overflow. */
int parse_u64_prefix(const char **s, u64 *out, int base)
{
	const char *p = *s;
	if (base == 0) {
		base = 10;
		if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
			base = 16;
			p += 2;
		}
	} else if (base == 16 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		p += 2;
	}
	u64 v = 0;
	int n = 0;
	for (;; p++, n++) {
		int d = digit_value(*p);
		if (d >= base)
			break;
		u64 nv = v * (u64)base + (u64)d;
		if ((nv - (u64)d) / (u64)base != v)
			return -1;
		v = nv;
	}
	if (n == 0)
		return -1;
	*s = p;
	*out = v;
	return 0;
}

int parse_u64(const char *s, u64 *out)
{
	if (parse_u64_prefix(&s, out, 0) < 0 || *s)
		return -1;
	return 0;
}

void kputs(const char *s)
{
	while (*s)
		uart_putc(*s++);
}

static void put_num(u64 v, unsigned base, int width, char pad, int upper)
{
	char buf[24];
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	int n = 0;
	do {
		buf[n++] = digits[v % base];
		v /= base;
	} while (v);
	while (width-- > n)
		uart_putc(pad);
	while (n)
		uart_putc(buf[--n]);
}

/* Supports %% %c %s %d %i %u %x %X %p with optional '0', width and l/ll/z. */
void vkprintf(const char *fmt, __builtin_va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			uart_putc(*fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0, lng = 0;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng = 1;
			fmt++;
		}
		switch (*fmt) {
		case '%':
			uart_putc('%');
			break;
		case 'c':
			uart_putc((char)__builtin_va_arg(ap, int));
			break;
		case 's': {
			const char *s = __builtin_va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int len = (int)strlen(s);
			while (width-- > len)
				uart_putc(' ');
			kputs(s);
			break;
		}
		case 'd':
		case 'i': {
			i64 v = lng ? __builtin_va_arg(ap, i64) : __builtin_va_arg(ap, int);
			if (v < 0) {
				uart_putc('-');
				put_num((u64)0 - (u64)v, 10, width ? width - 1 : 0, pad, 0);
			} else {
				put_num((u64)v, 10, width, pad, 0);
			}
			break;
		}
		case 'u':
			put_num(lng ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 10, width, pad, 0);
			break;
		case 'x':
		case 'X':
			put_num(lng ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 16, width, pad,
				*fmt == 'X');
			break;
		case 'p':
			kputs("0x");
			put_num((u64)__builtin_va_arg(ap, void *), 16, width, pad, 0);
			break;
		case 0:
			return;
		default:
			uart_putc('%');
			uart_putc(*fmt);
		}
	}
}

void kprintf(const char *fmt, ...)
{
	__builtin_va_list ap;
	__builtin_va_start(ap, fmt);
	vkprintf(fmt, ap);
	__builtin_va_end(ap);
}
