package dev.vexil

import java.io.File
import java.lang.ref.PhantomReference
import java.lang.ref.ReferenceQueue
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import java.util.Collections
import java.util.Locale

/**
 * Finds and loads the native library `vexil_jni`, in this order:
 *
 * 1. the file named by the system property `vexil.native.library` (or the environment
 *    variable `VEXIL_NATIVE_LIBRARY`);
 * 2. the jar's resource `dev/vexil/native/<os>-<arch>/<library file>`, copied to a
 *    temporary file (a jar that bundles the library for desktop JVMs);
 * 3. `System.loadLibrary("vexil_jni")`: `java.library.path` on a JVM, the APK's `jniLibs` on
 *    Android.
 */
internal object NativeLibrary {
    private const val NAME = "vexil_jni"

    @Volatile private var failure: Throwable? = null

    @Volatile private var loaded = false

    fun ensureLoaded() {
        if (loaded) return
        synchronized(this) {
            if (loaded) return
            failure?.let { throw NativeException("the Vexil native library could not be loaded: ${it.message}", it) }
            try {
                load()
                loaded = true
            } catch (e: Throwable) {
                failure = e
                throw NativeException("the Vexil native library could not be loaded: ${e.message}", e)
            }
        }
    }

    private fun load() {
        val explicit = System.getProperty("vexil.native.library")?.takeIf { it.isNotBlank() }
            ?: System.getenv("VEXIL_NATIVE_LIBRARY")?.takeIf { it.isNotBlank() }
        if (explicit != null) {
            System.load(File(explicit).absolutePath)
            return
        }
        val fileName = System.mapLibraryName(NAME)
        val resource = "/dev/vexil/native/${platform()}/$fileName"
        NativeLibrary::class.java.getResourceAsStream(resource)?.use { input ->
            val dir = Files.createTempDirectory("vexil-native")
            val file = dir.resolve(fileName)
            Files.copy(input, file, StandardCopyOption.REPLACE_EXISTING)
            file.toFile().deleteOnExit()
            dir.toFile().deleteOnExit()
            System.load(file.toAbsolutePath().toString())
            return
        }
        System.loadLibrary(NAME)
    }

    private fun platform(): String {
        val os = System.getProperty("os.name").lowercase(Locale.ROOT).let {
            when {
                it.contains("linux") -> "linux"
                it.contains("mac") -> "macos"
                it.contains("windows") -> "windows"
                else -> it.replace(' ', '-')
            }
        }
        val arch = when (val a = System.getProperty("os.arch").lowercase(Locale.ROOT)) {
            "amd64", "x86_64" -> "x86_64"
            "aarch64", "arm64" -> "aarch64"
            else -> a
        }
        return "$os-$arch"
    }
}

/**
 * Frees native handles whose Java owner became unreachable. A PhantomReference queue rather
 * than `java.lang.ref.Cleaner`, which Android only has from API 33.
 */
internal object NativeCleaner {
    private class Cleanable(owner: Any, queue: ReferenceQueue<Any>, val action: Runnable) :
        PhantomReference<Any>(owner, queue)

    private val queue = ReferenceQueue<Any>()

    // Keeps the references themselves reachable until they are enqueued.
    private val pending: MutableSet<Cleanable> = Collections.synchronizedSet(HashSet())

    init {
        val thread = Thread({
            while (true) {
                val reference = try {
                    queue.remove() as Cleanable
                } catch (_: InterruptedException) {
                    continue
                }
                pending.remove(reference)
                try {
                    reference.action.run()
                } catch (e: Throwable) {
                    System.err.println("vexil: freeing a native handle failed: $e")
                }
            }
        }, "vexil-cleaner")
        thread.isDaemon = true
        thread.start()
    }

    /** Runs [action] once [owner] is unreachable; [action] must not refer to [owner]. */
    fun register(owner: Any, action: Runnable) {
        pending.add(Cleanable(owner, queue, action))
    }

    /** Handles registered and not yet freed (for tests). */
    fun pendingCount(): Int = pending.size
}
